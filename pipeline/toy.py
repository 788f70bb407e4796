"""The toy pipeline's stages: the paper's method, recipe by recipe, for each training seed.

:class:`SeedPlan` lays out the stages of one seed (teacher, its zero-shot
scores, curation embeddings, DU / DS / ADS pairs, the students and their
zero-shot scores) as :class:`pipeline.stages.Stage` objects that run the
recipes users call, with their YAMLs.
"""

import csv
import math
import os

import numpy as np

from dataset.manifest import read_caption_csv, read_json_or_none
from dataset.toy import caption_events
from experiment.checkpoints import checkpoint_dirs
from pipeline.stages import REPO, Stage, read_text

__all__ = ["TARGETS", "ROWS", "parse_seeds", "check_hparams", "repo_path", "cosine_threshold", "threshold_flag",
           "printed_path", "count_rows", "pair_precision", "SeedPlan", "existing_outputs"]

# Target sets: zero-shot dataset name -> (world folder, curation YAML short name, table title).
TARGETS = {
    "esc50": ("ESC-50", "esc", "ESC-50"),
    "us8k": ("UrbanSound8K", "us8k", "UrbanSound8K"),
    "tut17": ("TUT2017", "tut", "TUT2017"),
}
# Rows of the table: student kind -> title.
ROWS = {"teacher": "teacher", "du": "DU", "ds": "DS", "ads": "ADS",
        "ds_softclap": "DS+SoftCLAP", "ads_softclap": "ADS+SoftCLAP"}


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
    high_ok = hparams["curation_mixing"] == "replace"
    if not (0.0 < float(hparams["curation_prob"]) < 1.0 or (high_ok and float(hparams["curation_prob"]) == 1.0)):
        raise SystemExit(
            f"--curation_prob must be in (0, 1) for the DU and ADS students (1 too with --curation_mixing=replace); "
            f"got {hparams['curation_prob']}."
        )
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
    """Rows of a caption CSV."""
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
        return [f"--data_annot_folder={self.world}", f"--output_base={base}", f"--experiment_name={name}",
                f"--seed={self.seed}", f"--number_of_epochs={epochs}", f"--batch_size={self.h['batch_size']}",
                f"--base_lr={lr}", "--noprogressbar"] + self.precision_flags() + self.model_flags()

    def model_flags(self):
        """The pipeline's ``model_flags`` (the architecture of every model it trains and scores; none by default)."""
        return list(self.h.get("model_flags") or [])

    def precision_flags(self):
        """``--precision`` and ``--device`` for each model stage; none for fp32 and no device (commands as before)."""
        precision, device = self.h["precision"], self.h.get("device")
        flags = [] if precision == "fp32" else [f"--precision={precision}"]
        return flags + ([f"--device={device}"] if device else [])

    def _build(self, world_stage):
        h = self.h
        teacher = self.stage(
            "teacher", "teacher training", deps=[world_stage],
            command=lambda: [repo_path("recipes/microsoft_clap_train.py"), repo_path(h["train_hparams"])]
            + self.training_flags("teacher", h["teacher_epochs"], h["teacher_lr"]),
            outputs=lambda stdout: _training_outputs(self.teacher_save),
            note=_training_note, train_save=self.teacher_save, distributed=True,
        )
        for target in h["target_sets"]:
            self.zeroshot[("teacher", target)] = self.zeroshot_stage("teacher", target, teacher, self.teacher_save,
                                                                    h["teacher_select"])
        toemb = self.stage(
            "embeddings", "curation embeddings (unpaired audio, teacher captions)", deps=[teacher],
            command=lambda: [repo_path("recipes/microsoft_curation_toemb.py"), repo_path(h["toemb_hparams"]),
                             f"--output_folder={self.out}/curation", "--clap_ckpt_path=",
                             f"--ssl_checkpoints_dir={self.teacher_save}", f"--ssl_select={h['teacher_select']}",
                             f"--audio_pathfile={self.world}/unpaired_paths.txt",
                             f"--text_pathfile={self.teacher_save}/train_raw.csv", "--noprogressbar",
                             # Always given: the YAML's default is the paper code's crop.
                             f"--eval_crop={h['curation_eval_crop']}"]
            + self.precision_flags()
            + list(h["toy_model_flags"]) + self.model_flags(),
            outputs=lambda stdout: existing_outputs({"audio_emb": os.path.join(self.emb_dir, "audio_emb.npy"),
                                              "text_emb": os.path.join(self.emb_dir, "text_emb.npy")}),
            distributed=True,
        )
        need_du = "du" in h["students"]
        if need_du:
            self.curated[("du", None)] = self.stage(
                "curation_du", "DU curation", deps=[toemb],
                command=lambda: [repo_path("recipes/retrieve_from_emb_thresh.py"), repo_path(h["du_hparams"]),
                                 f"--emb_dir={self.emb_dir}", "--audio_bs=1024",
                                 f"--sim_threshold={self.threshold('du', None)}",
                                 f"--caption_rows={h['caption_rows']}"],
                outputs=self.curation_outputs, note=_curation_note,
            )
        for target in h["target_sets"]:
            short = TARGETS[target][1]
            ds = self.stage(
                f"curation_ds_{target}", f"DS curation for {target}", deps=[toemb],
                command=lambda target=target, short=short: [
                    repo_path("recipes/retrieve_ds_t2t.py"), repo_path(h["ds_hparams"].format(set=short)),
                    f"--target_csv_path={self.teacher_save}/train_raw.csv", "--clap_ckpt_path=",
                    f"--ssl_checkpoints_dir={self.teacher_save}", f"--ssl_select={h['teacher_select']}",
                    f"--emb_dir={self.emb_dir}",
                    f"--sim_threshold={threshold_flag(h[f'ds_threshold_{target}'])}",
                    f"--zs_data_folder={self.target_folder(target)}", "--noprogressbar"] + list(h["toy_model_flags"])
                + self.model_flags() + self.precision_flags(),
                outputs=lambda stdout, target=target: _ds_outputs(self.emb_dir, target), note=_curation_note,
            )
            self.curated[("ds", target)] = ds
            if any(s.startswith("ads") for s in h["students"]):
                self.curated[("ads", target)] = self.stage(
                    f"curation_ads_{target}", f"ADS curation for {target}", deps=[ds],
                    command=lambda target=target, short=short: [
                        repo_path("recipes/retrieve_from_emb_thresh.py"), repo_path(h["ads_hparams"].format(set=short)),
                        f"--emb_dir={self.emb_dir}", f"--aud_ds_path={self.world}/unpaired_paths.txt",
                        "--audio_bs=1024", f"--sim_threshold={self.threshold('ads', target)}",
                        f"--caption_rows={h['caption_rows']}"],
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
        out = existing_outputs({"csv": path})
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
            # Replay batches per student_steps: every step is one with replace; a share 1 - p with insert.
            replay_share = 1.0 if h["curation_mixing"] == "replace" else 1.0 - prob
            epochs = max(1, round(int(h["student_steps"]) * replay_share / replay_batches))
            script, yaml_file = "recipes/microsoft_clap_train.py", h["train_hparams"]
            # Our variants are the toy YAMLs' defaults: a flag only for the paper's (earlier digests stay valid).
            extra = [f"--curation_mixing={h['curation_mixing']}"] if curated_key and h["curation_mixing"] != "insert" \
                else []
            if kind.endswith("softclap"):
                script, yaml_file = "recipes/softclap_train.py", h["softclap_hparams"]
                extra += [f"--teacher_checkpoints_dir={self.teacher_save}", f"--teacher_select={h['teacher_select']}",
                          f"--softclap_beta={h['softclap_beta']}"]
                if h["softclap_targets"] != "normalized":
                    extra.append(f"--softclap_targets={h['softclap_targets']}")
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
                           outputs=lambda stdout: _training_outputs(save), note=_training_note, train_save=save,
                           distributed=True)
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
                             f"--seed={self.seed}", "--noprogressbar"] + self.precision_flags() + self.model_flags(),
            outputs=lambda stdout: _zeroshot_outputs(folder),
            note=lambda out: f"top-1 {out['top1']:.3f}",
            skip=lambda: (model_stage.result or {}).get("skipped") and "its model was not trained",
        )


def existing_outputs(paths):
    """``paths`` itself when every file exists; ValueError naming the first that does not."""
    for path in paths.values():
        if not os.path.isfile(path):
            raise ValueError(f"missing {path}")
    return dict(paths)


def _training_outputs(save):
    if not checkpoint_dirs(save):
        raise ValueError(f"no checkpoint in {save}")
    log = read_text(os.path.join(os.path.dirname(save), "train_log.txt")) or ""
    last = [line for line in log.splitlines() if line.startswith("epoch")]
    return {"save": save, "last_epoch": last[-1] if last else ""}


def _training_note(out):
    line = out.get("last_epoch", "")
    return line.split(" - ", 1)[-1] if line else ""


def _ds_outputs(emb_dir, target):
    path = os.path.join(emb_dir, f"ds_{target}_pairs.csv")
    out = existing_outputs({"csv": path, "emb": os.path.join(emb_dir, f"ds_{target}_emb.npy")})
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


