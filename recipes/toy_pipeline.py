#!/usr/bin/env python3
"""The whole method in one command on the toy world: teacher, curation, students, zero-shot table.

Stages (each one runs a recipe users call, with its YAML, as a subprocess):

1. the toy world (``dataset.toy_world``): captioned corpus, unpaired pool and
   three target sets in the ESC-50, UrbanSound8K and TUT2017 layouts;
2. the teacher (``recipes/microsoft_clap_train.py``), then its zero-shot
   accuracy on every target set (``recipes/microsoft_zeroshot.py``);
3. curation: embeddings of the unpaired pool and the teacher's captions
   (``recipes/microsoft_curation_toemb.py``), DU pairs
   (``recipes/retrieve_from_emb_thresh.py``), DS pairs per target set
   (``recipes/retrieve_ds_t2t.py``) and ADS pairs per target set;
4. students that start from the teacher: CLAP with DU (replay: the teacher's
   training pairs), DS (the DS pairs as the training set), ADS (DS pairs as
   replay, ADS pairs curated), and SoftCLAP (``recipes/softclap_train.py``)
   with DS and ADS; each is scored zero-shot on its target set (DU on all);
5. the table: ``results.md``, ``results.csv``, ``results_per_seed.csv`` and
   ``results.png`` in the output folder, printed at the end.

Each stage prints one progress line and records a marker
(``<seed folder>/stages/<name>.json``) holding a digest of its command and of
the stages it depends on. A rerun skips stages whose marker matches, reruns
those whose inputs changed, and resumes an interrupted training from its last
checkpoint (``--resume_interrupt=True``). Independent stages run side by side
(``jobs``), each with ``cpus / jobs`` threads.

To run this recipe:
    python recipes/toy_pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results
Three seeds, mean ± spread per cell:
    python recipes/toy_pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results --seeds=1,2,3

Authors
 * clap-curation-recipes contributors (after Wang et al., arXiv 2305.01864)
"""

import csv
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from dataset.manifest import atomic_write, read_caption_csv, read_json_or_none, write_csv
from dataset.toy_world import caption_events, generate_toy_world
from recipes import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Target sets: zero-shot dataset name -> (world folder, curation YAML short name, table title).
TARGETS = {
    "esc50": ("ESC-50", "esc", "ESC-50"),
    "us8k": ("UrbanSound8K", "us8k", "UrbanSound8K"),
    "tut17": ("TUT2017", "tut", "TUT2017"),
}
# Rows of the table: student kind -> title.
ROWS = {"teacher": "teacher", "du": "DU", "ds": "DS", "ads": "ADS",
        "ds_softclap": "DS+SoftCLAP", "ads_softclap": "ADS+SoftCLAP"}
RESUME_FLAGS = ("--resume_interrupt=", "--prev_ckpt_dir=")


# ------------------------------------------------------------------ stages
class Stage:
    """One step of the pipeline.

    Arguments
    ---------
    name : str
        Unique within its seed folder (the marker's file name).
    label : str
        What the progress line calls it.
    deps : list of Stage
        Stages that must be done first.
    command : callable
        ``command() -> list of str`` (script, YAML, flags), built when the
        stage starts, so it may read its dependencies' outputs; ``None`` for
        an in-process stage.
    run : callable, optional
        In-process work (instead of ``command``).
    outputs : callable
        ``outputs(stdout) -> dict`` of results kept in the marker (paths,
        counts) and read by later stages; it raises if an output is missing.
    note : callable, optional
        ``note(outputs) -> str`` for the progress line.
    train_save : str, optional
        ``save`` folder of a training stage: removed when the stage's inputs
        change, resumed from when it holds checkpoints.
    skip : callable, optional
        ``skip() -> str or None``: a reason not to run (e.g. no curated pairs).
    marker_dir, log_dir : str
        Where the stage's marker (``<name>.json``) and log (``<name>.log``) go.
    """

    def __init__(self, name, label, deps=(), command=None, run=None, outputs=None, note=None,
                 train_save=None, skip=None, marker_dir=None, log_dir=None):
        self.name, self.label, self.deps = name, label, list(deps)
        self.command, self.run, self.note = command, run, note
        self.outputs = outputs or (lambda stdout: {})
        self.train_save, self.skip = train_save, skip
        self.marker_path = os.path.join(marker_dir, f"{name}.json")
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.result = None  # the marker dict once done
        self.digest = self.argv = self.skip_reason = None
        self.prepared = False

    def compute_digest(self, argv):
        """Digest of the command (without resume flags) and of the dependencies' digests."""
        stable = [a for a in (argv or []) if not a.startswith(RESUME_FLAGS)]
        payload = json.dumps({"argv": stable, "deps": [d.digest for d in self.deps]})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Runner:
    """Runs stages in dependency order, ``jobs`` at a time, printing one line per stage."""

    def __init__(self, stages, jobs=1):
        self.stages = stages
        self.jobs = max(1, int(jobs))
        self.done = 0
        self.failed = []
        self.cpus = os.cpu_count() or 1

    def _env(self, sharing):
        """Threads per subprocess: the CPUs split between the stages that will run side by side.

        Oversubscribing the cores (two PyTorch processes with two threads each
        on two cores) makes every operator several times slower.
        """
        threads = str(max(1, self.cpus // max(1, sharing)))
        return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)

    def _line(self, stage, text):
        print(f"[{self.done:>2}/{len(self.stages)}] {stage.label}: {text}", flush=True)

    def _prepare(self, stage):
        """Builds the command (or the reason not to run) and digest; True if the marker says it is done."""
        stage.skip_reason = stage.skip() if stage.skip else None
        stage.argv = None if stage.skip_reason or not stage.command else stage.command()
        stage.digest = stage.compute_digest([f"not run: {stage.skip_reason}"] if stage.skip_reason else stage.argv)
        marker = read_json_or_none(stage.marker_path)
        if marker and marker.get("digest") == stage.digest and _outputs_present(marker):
            stage.result = marker
            return True
        if stage.train_save and os.path.isdir(stage.train_save):
            previous = marker.get("digest") if marker else _read_text(stage.train_save + ".digest")
            if previous and previous != stage.digest:
                # Inputs changed: the old checkpoints belong to another run.
                shutil.rmtree(os.path.dirname(stage.train_save))
        return False

    def _finish(self, stage, outputs, seconds, skipped=None):
        marker = {"name": stage.name, "digest": stage.digest, "argv": stage.argv, "seconds": round(seconds, 1),
                  "outputs": outputs}
        if skipped:
            marker["skipped"] = skipped
        os.makedirs(os.path.dirname(stage.marker_path), exist_ok=True)
        atomic_write(stage.marker_path, lambda f: f.write(json.dumps(marker, indent=2, ensure_ascii=False) + "\n"),
                     "w", encoding="utf-8")
        stage.result = marker
        self.done += 1
        if skipped:
            self._line(stage, f"not run: {skipped}")
        else:
            note = stage.note(outputs) if stage.note else ""
            self._line(stage, f"done in {seconds:.0f} s" + (f" · {note}" if note else ""))

    def _start(self, stage, sharing=1):
        if stage.skip_reason:
            self._finish(stage, {}, 0.0, skipped=stage.skip_reason)
            return None
        if stage.run is not None:
            begin = time.perf_counter()
            outputs = stage.run()
            self._finish(stage, outputs, time.perf_counter() - begin)
            return None
        argv = list(stage.argv)
        if stage.train_save and common.checkpoint_dirs(stage.train_save):
            argv += ["--resume_interrupt=True", f"--prev_ckpt_dir={stage.train_save}"]
        if stage.train_save:
            os.makedirs(os.path.dirname(stage.train_save), exist_ok=True)
            with open(stage.train_save + ".digest", "w", encoding="utf-8") as f:
                f.write(stage.digest)
        os.makedirs(os.path.dirname(stage.log_path), exist_ok=True)
        log = open(stage.log_path, "w", encoding="utf-8")
        proc = subprocess.Popen([sys.executable] + argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=self._env(sharing))
        return proc, log, time.perf_counter()

    def run(self):
        """Runs every stage; returns True if all succeeded (failures are reported with their log)."""
        pending = list(self.stages)
        running = {}
        while pending or running:
            ready = [s for s in pending if all(d.result is not None for d in s.deps)]
            # Finished stages are skipped at once, even while every lane is busy.
            for stage in list(ready):
                if not stage.prepared:
                    stage.prepared = True
                    if self._prepare(stage):
                        pending.remove(stage)
                        ready.remove(stage)
                        self.done += 1
                        self._line(stage, "already done, skipped")
            if any(s not in ready and all(d.result is not None for d in s.deps) for s in pending):
                continue  # skipping made more stages ready: look again before starting any
            for stage in ready:
                if len(running) >= self.jobs:
                    break
                pending.remove(stage)
                # Stages that will share the CPUs with this one.
                sharing = min(self.jobs, len(running) + 1 + len([s for s in ready if s.result is None and s in pending]))
                try:
                    started = self._start(stage, sharing)
                except Exception as err:  # an in-process stage: report like a failed subprocess
                    self._fail(stage, f"{type(err).__name__}: {err}")
                    continue
                if started:
                    running[stage] = started
            if self.failed and not running:
                break
            if not running:
                if pending and not ready:
                    break
                continue
            time.sleep(0.2)
            for stage, (proc, log, begin) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[stage]
                stdout = _read_text(stage.log_path) or ""
                if proc.returncode != 0:
                    self._fail(stage, f"exit code {proc.returncode}")
                    continue
                try:
                    outputs = stage.outputs(stdout)
                except (OSError, ValueError, KeyError) as err:
                    self._fail(stage, f"finished but its outputs are missing ({err})")
                    continue
                self._finish(stage, outputs, time.perf_counter() - begin)
        return not self.failed

    def _fail(self, stage, reason):
        self.failed.append(stage)
        self.done += 1
        self._line(stage, f"FAILED ({reason}); log: {stage.log_path}")
        tail = (_read_text(stage.log_path) or "").splitlines()[-25:]
        if tail:
            print("    " + "\n    ".join(tail), flush=True)


def _outputs_present(marker):
    """Every file a finished stage recorded is still there."""
    paths = [v for v in (marker.get("outputs") or {}).values() if isinstance(v, str) and os.path.isabs(v)]
    return all(os.path.exists(p) for p in paths)


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


# ------------------------------------------------------------ the pipeline
def parse_seeds(hparams):
    """The training seeds: ``seeds`` ("1,2,3" or a list) or else ``[seed]``."""
    seeds = hparams.get("seeds")
    if seeds is None:
        return [int(hparams["seed"])]
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace(" ", ",").split(",") if s]
    if isinstance(seeds, int):
        seeds = [seeds]
    return [int(s) for s in seeds]


def check_hparams(hparams):
    """Fails early, saying what to fix."""
    unknown = [s for s in hparams["target_sets"] if s not in TARGETS]
    if unknown or not hparams["target_sets"]:
        raise SystemExit(f"--target_sets must be a non-empty subset of {list(TARGETS)}; got {hparams['target_sets']}.")
    bad = [s for s in hparams["students"] if s not in ROWS or s == "teacher"]
    if bad:
        raise SystemExit(f"--students must be a subset of {[r for r in ROWS if r != 'teacher']}; got {bad}.")
    if not 0.0 < float(hparams["curation_prob"]) < 1.0:
        raise SystemExit(f"--curation_prob must be in (0, 1) for the DU and ADS students; got {hparams['curation_prob']}.")
    for key in ("du_clip_fraction", "ads_clip_fraction"):
        if not 0.0 < float(hparams[key]) <= 1.0:
            raise SystemExit(f"--{key} must be in (0, 1]; got {hparams[key]}.")


def repo_path(path):
    """A YAML path relative to the repository (the pipeline runs from anywhere)."""
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def cosine_threshold(emb_dir, caption_set, clip_fraction):
    """The cosine that ``clip_fraction`` of the unpaired clips reach with their best caption (2 decimals, floor)."""
    audio = np.load(os.path.join(emb_dir, "audio_emb.npy")).astype(np.float32)
    captions = np.load(os.path.join(emb_dir, f"{caption_set}_emb.npy")).astype(np.float32)
    best = np.full(len(audio), -1.0, dtype=np.float32)
    for start in range(0, len(captions), 4096):
        best = np.maximum(best, (audio @ captions[start:start + 4096].T).max(axis=1))
    value = float(np.quantile(best, 1.0 - float(clip_fraction)))
    return math.floor(value * 100) / 100


def threshold_flag(value):
    """``--sim_threshold`` text whose YAML value prints back the same (it names the output file)."""
    return repr(round(float(value), 4))


def printed_path(stdout, prefix):
    """The path a recipe printed after ``prefix`` (e.g. ``Curation CSV: ``)."""
    for line in (stdout or "").splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].rsplit(" (summary: ", 1)[0].strip()
    raise ValueError(f"the log has no line starting with {prefix!r}")


def count_rows(path):
    return len(read_caption_csv(path))


def pair_precision(pairs_csv, world):
    """Share of curated (unpaired clip, caption) pairs whose caption names an event of the clip (toy truth)."""
    truth = {}
    with open(os.path.join(world, "unpaired_labels.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            truth[row["wav_path"]] = set(row["events"].split(";"))
    rows = read_caption_csv(pairs_csv)
    if not rows:
        return None
    hits = sum(bool(truth.get(r["wav_path"], set()) & set(caption_events(r["caption"]))) for r in rows)
    return hits / len(rows)


class SeedPlan:
    """The stages of one training seed (the world stage is shared)."""

    def __init__(self, hparams, seed, world_stage, world):
        self.h, self.seed, self.world = hparams, seed, world
        self.out = os.path.abspath(os.path.join(hparams["output_folder"], f"seed{seed}"))
        self.marker_dir = os.path.join(self.out, "stages")
        self.log_dir = os.path.join(self.out, "logs")
        self.emb_dir = os.path.join(self.out, "curation", "save")
        self.teacher_save = os.path.join(self.out, "teacher", "save")
        self.stages = []
        self.zeroshot = {}  # (row, target) -> stage
        self.curated = {}   # (row, target) -> stage giving the curated CSV (DU: target None)
        self.students = {}
        self._build(world_stage)

    def stage(self, name, label, **kwargs):
        s = Stage(name, f"seed {self.seed} · {label}", marker_dir=self.marker_dir, log_dir=self.log_dir, **kwargs)
        self.stages.append(s)
        return s

    # -------------------------------------------------------- commands
    def training_flags(self, name, epochs, lr):
        base = self.out if name == "teacher" else os.path.join(self.out, "students")
        return [f"--data_annot_folder={self.world}", f"--output_base={base}", f"--experiment_name={name}", f"--seed={self.seed}",
                f"--number_of_epochs={epochs}", f"--batch_size={self.h['batch_size']}", f"--base_lr={lr}",
                "--noprogressbar"]

    def _build(self, world_stage):
        h = self.h
        teacher = self.stage(
            "teacher", "teacher training", deps=[world_stage],
            command=lambda: [repo_path("recipes/microsoft_clap_train.py"), repo_path(h["train_hparams"])]
            + self.training_flags("teacher", h["teacher_epochs"], h["teacher_lr"]),
            outputs=lambda stdout: _training_outputs(self.teacher_save),
            note=_training_note, train_save=self.teacher_save,
        )
        for target in h["target_sets"]:
            self.zeroshot[("teacher", target)] = self.zeroshot_stage("teacher", target, teacher, self.teacher_save,
                                                                    h["teacher_select"])
        toemb = self.stage(
            "embeddings", "curation embeddings (unpaired audio, teacher captions)", deps=[teacher],
            command=lambda: [repo_path("recipes/microsoft_curation_toemb.py"), repo_path(h["toemb_hparams"]),
                             f"--output_folder={self.out}/curation", "--clap_ckpt_path=",
                             f"--ssl_checkpoints_dir={self.teacher_save}",
                             f"--audio_pathfile={self.world}/unpaired_paths.txt",
                             f"--text_pathfile={self.teacher_save}/train_raw.csv", "--noprogressbar"]
            + list(h["toy_model_flags"]),
            outputs=lambda stdout: _existing({"audio_emb": os.path.join(self.emb_dir, "audio_emb.npy"),
                                              "text_emb": os.path.join(self.emb_dir, "text_emb.npy")}),
        )
        need_du = "du" in h["students"]
        if need_du:
            self.curated[("du", None)] = self.stage(
                "curation_du", "DU curation", deps=[toemb],
                command=lambda: [repo_path("recipes/retrieve_from_emb_thresh.py"), repo_path(h["du_hparams"]),
                                 f"--emb_dir={self.emb_dir}", "--audio_bs=1024",
                                 f"--sim_threshold={self.threshold('du', None)}"],
                outputs=self.curation_outputs, note=_curation_note,
            )
        for target in h["target_sets"]:
            short = TARGETS[target][1]
            ds = self.stage(
                f"curation_ds_{target}", f"DS curation for {target}", deps=[toemb],
                command=lambda target=target, short=short: [
                    repo_path("recipes/retrieve_ds_t2t.py"), repo_path(h["ds_hparams"].format(set=short)),
                    f"--target_csv_path={self.teacher_save}/train_raw.csv", "--clap_ckpt_path=",
                    f"--ssl_checkpoints_dir={self.teacher_save}", f"--emb_dir={self.emb_dir}",
                    f"--sim_threshold={threshold_flag(h[f'ds_threshold_{target}'])}",
                    f"--zs_data_folder={self.target_folder(target)}", "--noprogressbar"] + list(h["toy_model_flags"]),
                outputs=lambda stdout, target=target: _ds_outputs(self.emb_dir, target), note=_curation_note,
            )
            self.curated[("ds", target)] = ds
            if any(s.startswith("ads") for s in h["students"]):
                self.curated[("ads", target)] = self.stage(
                    f"curation_ads_{target}", f"ADS curation for {target}", deps=[ds],
                    command=lambda target=target, short=short: [
                        repo_path("recipes/retrieve_from_emb_thresh.py"), repo_path(h["ads_hparams"].format(set=short)),
                        f"--emb_dir={self.emb_dir}", f"--aud_ds_path={self.world}/unpaired_paths.txt",
                        "--audio_bs=1024", f"--sim_threshold={self.threshold('ads', target)}"],
                    outputs=self.curation_outputs, note=_curation_note,
                    skip=lambda target=target: None if self.pairs(("ds", target)) else "no DS captions to match",
                )
        for kind in h["students"]:
            for target in ([None] if kind == "du" else h["target_sets"]):
                self.student_stage(kind, target, teacher)

    def target_folder(self, target):
        return os.path.join(self.world, TARGETS[target][0])

    def threshold(self, kind, target):
        """The DU / ADS threshold flag: the YAML value, or the clip-fraction quantile of the teacher's cosines."""
        h = self.h
        key = "du_threshold" if kind == "du" else f"ads_threshold_{target}"
        if h[key] is not None:
            return threshold_flag(h[key])
        caption_set = "text" if kind == "du" else f"ds_{target}"
        return threshold_flag(cosine_threshold(self.emb_dir, caption_set, h[f"{kind}_clip_fraction"]))

    def curation_outputs(self, stdout):
        path = printed_path(stdout, "Curation CSV: ")
        out = _existing({"csv": path})
        out["pairs"] = count_rows(path)
        out["threshold"] = _threshold_from_name(path)
        out["pair_precision"] = pair_precision(path, self.world)
        return out

    def pairs(self, key):
        """Rows of a finished curation stage (0 if it was not run)."""
        stage = self.curated.get(key)
        return (stage.result or {}).get("outputs", {}).get("pairs", 0) if stage else 0

    def csv(self, key):
        return self.curated[key].result["outputs"]["csv"]

    def student_stage(self, kind, target, teacher):
        h = self.h
        name = kind if target is None else f"{kind}_{target}"
        save = os.path.join(self.out, "students", name, "save")
        base = kind.replace("_softclap", "")
        replay_key = ("ds", target) if base in ("ds", "ads") else None
        curated_key = ("du", None) if base == "du" else (("ads", target) if base == "ads" else None)
        deps = [teacher] + [self.curated[k] for k in (replay_key, curated_key) if k]

        def command():
            replay = self.csv(replay_key) if replay_key else os.path.join(self.teacher_save, "train_raw.csv")
            prob = float(h["curation_prob"]) if curated_key else 0.0
            replay_batches = max(1, count_rows(replay) // int(h["batch_size"]))
            epochs = max(1, round(int(h["student_steps"]) * (1.0 - prob) / replay_batches))
            script, yaml_file = "recipes/microsoft_clap_train.py", h["train_hparams"]
            extra = []
            if kind.endswith("softclap"):
                script, yaml_file = "recipes/softclap_train.py", h["softclap_hparams"]
                extra = [f"--teacher_checkpoints_dir={self.teacher_save}", f"--teacher_select={h['teacher_select']}",
                         f"--softclap_beta={h['softclap_beta']}"]
            flags = self.training_flags(name, epochs, h["student_lr"]) + [
                f"--train_csv_path={replay}", f"--ssl_checkpoints_dir={self.teacher_save}",
                f"--ssl_select={h['teacher_select']}", f"--curation_prob={prob}"]
            if curated_key:
                flags.append(f"--curation_csv={self.csv(curated_key)}")
            return [repo_path(script), repo_path(yaml_file)] + flags + extra

        def skip():
            if replay_key and self.pairs(replay_key) < int(h["batch_size"]):
                return f"fewer DS pairs ({self.pairs(replay_key)}) than one batch ({h['batch_size']})"
            if curated_key and not self.pairs(curated_key):
                return "no curated pairs"
            return None

        label = f"{ROWS[kind]} student" + (f" for {target}" if target else "")
        stage = self.stage(f"student_{name}", label, deps=deps, command=command, skip=skip,
                           outputs=lambda stdout: _training_outputs(save), note=_training_note, train_save=save)
        self.students[(kind, target)] = stage
        for t in (h["target_sets"] if target is None else [target]):
            self.zeroshot[(kind, t)] = self.zeroshot_stage(name, t, stage, save, h["student_select"])

    def zeroshot_stage(self, model_name, target, model_stage, save, select):
        folder = os.path.join(self.out, "zeroshot", f"{model_name}_{target}")
        return self.stage(
            f"zeroshot_{model_name}_{target}", f"zero-shot {model_name} on {target}", deps=[model_stage],
            command=lambda: [repo_path("recipes/microsoft_zeroshot.py"), repo_path(self.h["zeroshot_hparams"]),
                             f"--dataset={target}", f"--data_folder={self.target_folder(target)}",
                             f"--ssl_checkpoints_dir={save}", f"--ssl_select={select}",
                             f"--output_base={self.out}/zeroshot", f"--experiment_name={model_name}_{target}",
                             f"--seed={self.seed}", "--noprogressbar"],
            outputs=lambda stdout: _zeroshot_outputs(folder),
            note=lambda out: f"top-1 {out['top1']:.3f}",
            skip=lambda: (model_stage.result or {}).get("skipped") and "its model was not trained",
        )


def _existing(paths):
    for path in paths.values():
        if not os.path.isfile(path):
            raise ValueError(f"missing {path}")
    return dict(paths)


def _training_outputs(save):
    if not common.checkpoint_dirs(save):
        raise ValueError(f"no checkpoint in {save}")
    log = _read_text(os.path.join(os.path.dirname(save), "train_log.txt")) or ""
    last = [line for line in log.splitlines() if line.startswith("epoch")]
    return {"save": save, "last_epoch": last[-1] if last else ""}


def _training_note(out):
    line = out.get("last_epoch", "")
    return line.split(" - ", 1)[-1] if line else ""


def _ds_outputs(emb_dir, target):
    path = os.path.join(emb_dir, f"ds_{target}_pairs.csv")
    out = _existing({"csv": path, "emb": os.path.join(emb_dir, f"ds_{target}_emb.npy")})
    out["pairs"] = count_rows(path)
    return out


def _curation_note(out):
    note = f"{out['pairs']} pairs"
    if out.get("threshold") is not None:
        note += f" at cosine >= {out['threshold']}"
    if out.get("pair_precision") is not None:
        note += f", {100 * out['pair_precision']:.0f}% name an event of their clip"
    return note


def _threshold_from_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return float(stem.rsplit("_thr", 1)[1]) if "_thr" in stem else None


def _zeroshot_outputs(folder):
    path = os.path.join(folder, "zeroshot_results.json")
    results = read_json_or_none(path)
    if results is None:
        raise ValueError(f"missing {path}")
    return {"json": path, "top1": results["top1"], "top5": results["top5"], "clips": results["clips_scored"]}


# ----------------------------------------------------------------- results
def collect(plans, hparams):
    """One row per (seed, model, target set): accuracy and curated-pair figures."""
    rows = []
    for plan in plans:
        for (kind, target), stage in plan.zeroshot.items():
            out = (stage.result or {}).get("outputs") or {}
            curated = plan.curated.get(("du", None) if kind == "du" else (kind.replace("_softclap", ""), target))
            cur = (curated.result or {}).get("outputs", {}) if curated is not None and kind != "teacher" else {}
            rows.append({
                "seed": plan.seed, "model": ROWS[kind], "dataset": target,
                "top1": out.get("top1"), "top5": out.get("top5"), "clips": out.get("clips"),
                "curated_pairs": cur.get("pairs"), "pair_precision": cur.get("pair_precision"),
                "threshold": cur.get("threshold"),
                "not_run": (stage.result or {}).get("skipped") or "",
            })
    return rows


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    sd = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), sd, len(values)


def summarise(rows, hparams):
    """Per (model, dataset): mean, sample std and count over seeds of top-1, top-5 and pair counts."""
    models = [ROWS[k] for k in ["teacher"] + list(hparams["students"])]
    table = []
    for model in models:
        for target in hparams["target_sets"]:
            cell = [r for r in rows if r["model"] == model and r["dataset"] == target]
            top1, top1_sd, n = _mean_sd([r["top1"] for r in cell])
            top5, top5_sd, _ = _mean_sd([r["top5"] for r in cell])
            pairs, _, _ = _mean_sd([r["curated_pairs"] for r in cell])
            precision, _, _ = _mean_sd([r["pair_precision"] for r in cell])
            table.append({"model": model, "dataset": target, "seeds": n, "top1_mean": top1, "top1_sd": top1_sd,
                          "top5_mean": top5, "top5_sd": top5_sd, "curated_pairs_mean": pairs,
                          "pair_precision_mean": precision,
                          "top1_per_seed": ";".join("" if r["top1"] is None else f"{r['top1']:.4f}" for r in cell)})
    return table


def _pct(mean, sd):
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def markdown_table(table, hparams, seeds):
    targets = hparams["target_sets"]
    cells = {(t["model"], t["dataset"]): t for t in table}
    titles = [TARGETS[t][2] for t in targets]
    lines = ["| model | " + " | ".join(titles) + " | curated pairs (" + " / ".join(titles) + ") |",
             "|---" * (len(targets) + 2) + "|"]
    for model in dict.fromkeys(t["model"] for t in table):
        accs = [_pct(cells[(model, t)]["top1_mean"], cells[(model, t)]["top1_sd"]) for t in targets]
        pairs = [cells[(model, t)]["curated_pairs_mean"] for t in targets]
        pair_text = "–" if all(p is None for p in pairs) else (
            f"{pairs[0]:.0f} (shared)" if model == "DU" else " / ".join("–" if p is None else f"{p:.0f}" for p in pairs))
        lines.append(f"| {model} | " + " | ".join(accs) + f" | {pair_text} |")
    return "\n".join(lines)


def verdicts(table, hparams):
    """What the run measured: each row against the teacher, SoftCLAP against its plain counterpart."""
    cells = {(t["model"], t["dataset"]): t for t in table}
    out = []

    def diff(a, b, target):
        x, y = cells.get((a, target)), cells.get((b, target))
        if not x or not y or x["top1_mean"] is None or y["top1_mean"] is None:
            return None
        return 100 * (x["top1_mean"] - y["top1_mean"])

    comparisons = [(ROWS[k], "teacher") for k in hparams["students"]]
    comparisons += [(ROWS[k], ROWS[k.replace("_softclap", "")]) for k in hparams["students"]
                    if k.endswith("softclap") and k.replace("_softclap", "") in hparams["students"]]
    for a, b in comparisons:
        parts = []
        for target in hparams["target_sets"]:
            d = diff(a, b, target)
            if d is not None:
                parts.append(f"{TARGETS[target][2]} {d:+.1f}")
        if parts:
            deltas = [diff(a, b, t) for t in hparams["target_sets"] if diff(a, b, t) is not None]
            word = ("helps" if min(deltas) > 0 else "hurts" if max(deltas) < 0
                    else "no change" if max(map(abs, deltas)) == 0 else "mixed")
            out.append(f"- {a} vs {b}: {', '.join(parts)} points of top-1 ({word})")
    return out


def write_results(plans, hparams, seeds, machine):
    """Writes results.md / .csv / _per_seed.csv / .png into the output folder; returns the Markdown text."""
    out = os.path.abspath(hparams["output_folder"])
    rows = collect(plans, hparams)
    table = summarise(rows, hparams)
    per_seed_fields = ["seed", "model", "dataset", "top1", "top5", "clips", "curated_pairs", "pair_precision",
                       "threshold", "not_run"]
    write_csv(os.path.join(out, "results_per_seed.csv"), [{k: _fmt(r[k]) for k in per_seed_fields} for r in rows],
              per_seed_fields)
    fields = list(table[0]) if table else []
    write_csv(os.path.join(out, "results.csv"), [{k: _fmt(t[k]) for k in fields} for t in table], fields)
    spread = "mean ± sample standard deviation over seeds " + ", ".join(map(str, seeds)) if len(seeds) > 1 \
        else f"seed {seeds[0]}"
    text = "\n".join([
        "# Toy-world results",
        "",
        f"Zero-shot top-1 accuracy (%) on the toy target sets; {spread}. DS and ADS students are "
        "trained per target set; the DU student is shared. Curated pairs: DU = unpaired clip x caption "
        "pairs, DS = training pairs kept, ADS = unpaired clip x DS caption pairs.",
        "",
        markdown_table(table, hparams, seeds),
        "",
        "Measured differences (mean over seeds):",
        "",
        *verdicts(table, hparams),
        "",
        f"Machine: {machine}. Settings: world {hparams['world_size']} (seed {hparams['world_seed']}), teacher "
        f"{hparams['teacher_epochs']} epochs, students {hparams['student_steps']} steps, curation_prob "
        f"{hparams['curation_prob']}, softclap_beta {hparams['softclap_beta']}.",
        "",
    ])
    atomic_write(os.path.join(out, "results.md"), lambda f: f.write(text), "w", encoding="utf-8")
    write_bar_chart(os.path.join(out, "results.png"), table, hparams, spread)
    return text


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else value


def write_bar_chart(path, table, hparams, subtitle):
    """Grouped bars: one group per target set, one bar per model, error bars = spread over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    targets = hparams["target_sets"]
    models = list(dict.fromkeys(t["model"] for t in table))
    cells = {(t["model"], t["dataset"]): t for t in table}
    fig = Figure(figsize=(2.2 + 1.6 * len(targets), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        means = [100 * (cells[(model, t)]["top1_mean"] or 0.0) for t in targets]
        sds = [100 * (cells[(model, t)]["top1_sd"] or 0.0) for t in targets]
        xs = [k + (i - (len(models) - 1) / 2) * width for k in range(len(targets))]
        ax.bar(xs, means, width, yerr=sds if any(sds) else None, capsize=2, label=model)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([TARGETS[t][2] for t in targets])
    ax.set_ylabel("zero-shot top-1 (%)")
    ax.set_title(f"Toy world: teacher and students ({subtitle})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def machine_description():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU used"


def main(argv=None):
    """Parses flags, builds the stages of every seed, runs them and writes the table."""
    hparams_file, _, overrides = common.parse_arguments(argv)
    hparams = common.load_hparams(hparams_file, overrides)
    check_hparams(hparams)
    seeds = parse_seeds(hparams)
    out = os.path.abspath(hparams["output_folder"])
    os.makedirs(out, exist_ok=True)
    world = os.path.join(out, "world")
    begin = time.perf_counter()
    print(f"Toy pipeline: output folder {out}; seeds {seeds}; {hparams['jobs']} job(s) at a time", flush=True)

    world_stage = Stage("world", f"toy world ({hparams['world_size']}, seed {hparams['world_seed']})",
                        marker_dir=os.path.join(out, "stages"), log_dir=os.path.join(out, "logs"),
                        command=lambda: ["dataset.toy_world", world, hparams["world_size"], str(hparams["world_seed"])],
                        run=lambda: {"world_json": generate_toy_world(world, hparams["world_size"],
                                                                      int(hparams["world_seed"]))["paths"]["world_json"]},
                        outputs=lambda stdout: _existing({"world_json": os.path.join(world, "world.json")}))
    plans = [SeedPlan(hparams, seed, world_stage, world) for seed in seeds]
    stages = [world_stage] + [s for plan in plans for s in plan.stages]
    ok = Runner(stages, jobs=hparams["jobs"]).run()
    if not ok:
        print("The pipeline stopped at a failed stage (see its log above). Rerun the same command to continue.",
              flush=True)
        return 1
    text = write_results(plans, hparams, seeds, machine_description())
    print("\n" + text)
    print(f"Results: {os.path.join(out, 'results.md')}, results.csv, results_per_seed.csv, results.png "
          f"({(time.perf_counter() - begin) / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
