"""The stages of one training seed: teacher, its zero-shot scores, curation, students, rounds of self-training.

:class:`SeedPlan` lays out, for one seed, the paper's method as
:class:`pipeline.stages.Stage` objects that run the recipes users call, with
their YAMLs: the teacher (trained here, or an existing model), its zero-shot
score on every scored target, the curation embeddings of the unpaired audio
and the caption pool, DU / DS / ADS pairs, the students that start from the
teacher, and their zero-shot scores. With ``rounds: N`` the best student of a
round (by a rule that never looks at a target's test clips,
:meth:`SeedPlan.selection_stage`) is the next round's teacher.

Where the data comes from is a :class:`pipeline.sources.Sources`: the toy
world (:func:`pipeline.sources.toy_sources`) or the user's folders
(:func:`pipeline.sources.user_sources`).
"""

import os

from experiment.checkpoints import checkpoint_dirs
from dataset.manifest import read_json_or_none
from pipeline.audit import audit_policy, audit_settings, clean_csv, leaked_paths, run_audit, write_audit_list
from pipeline.sources import merge_caption_pool
from pipeline.stages import Stage, read_text
from pipeline.toy import (
    ROWS, TARGETS, cosine_threshold, count_rows, existing_outputs, pair_precision, printed_path, repo_path,
    threshold_flag,
)

__all__ = ["SeedPlan", "TeacherRef", "row_key", "row_title", "curated_key", "model_rows", "target_title"]

#: Titles of the target sets the project scores (a label list is titled by its name).
TITLES = {**{name: title for name, (_, _, title) in TARGETS.items()}, "vggsound": "VGGSound", "tau19": "TAU2019"}


def target_title(name):
    """The table's title of a target set: ``ESC-50`` for ``esc50``; a label list's own name."""
    return TITLES.get(name, name)


def row_key(kind, round_index):
    """The key of a student kind in a round: ``ads`` in round 1, ``ads@r2`` later (round 1 keeps the toy's keys)."""
    return kind if round_index == 1 else f"{kind}@r{round_index}"


def row_title(key):
    """The table's name of a row key: ``ADS``; ``ADS (round 2)``."""
    kind, _, rnd = key.partition("@r")
    return ROWS[kind] + (f" (round {rnd})" if rnd else "")


def row_round(key):
    """The round of a row key (1 for the teacher and round 1)."""
    return int(key.partition("@r")[2] or 1)


def curated_key(key, target):
    """The ``plan.curated`` key of the pairs a row's student trained on (None for the teacher)."""
    kind, _, rnd = key.partition("@r")
    base = kind.replace("_softclap", "")
    if base == "teacher":
        return None
    suffix = f"@r{rnd}" if rnd else ""
    return (base + suffix, None) if base == "du" else (base + suffix, target)


def model_rows(hparams):
    """Row keys in table order: the teacher, then each round's students."""
    rows = ["teacher"]
    for r in range(1, int(hparams.get("rounds") or 1) + 1):
        rows += [row_key(k, r) for k in hparams["students"]]
    return rows


class TeacherRef:
    """Where a model's weights come from, as the recipes' flags.

    Arguments
    ---------
    save : str or callable, optional
        The ``save`` folder of one of our runs (a callable: resolved when a
        command is built, e.g. the student a selection stage chose).
    select : str
        Its checkpoint: ``loss``, ``acc`` or ``latest``.
    file : str, optional
        A checkpoint file or Hugging Face folder (:mod:`models.convert`'s layouts).
    fmt : str, optional
        The file's layout (``laion`` and ``hf`` go through ``--laion_ckpt_path``).
    stage : Stage, optional
        The stage that makes it (the teacher's training, a selection).
    """

    def __init__(self, save=None, select="loss", file=None, fmt=None, stage=None):
        self.save, self.select, self.file, self.fmt, self.stage = save, select, file, fmt, stage

    def save_path(self):
        return self.save() if callable(self.save) else self.save

    def flags(self, clear_clap=False):
        """The weight flags of a recipe that loads this model (``clear_clap``: the YAML names a default file)."""
        if self.file is None:
            return (["--clap_ckpt_path="] if clear_clap else []) + [
                f"--ssl_checkpoints_dir={self.save_path()}", f"--ssl_select={self.select}"]
        if self.fmt in ("laion", "hf"):
            return (["--clap_ckpt_path="] if clear_clap else []) + [f"--laion_ckpt_path={self.file}"]
        return [f"--clap_ckpt_path={self.file}"]

    def softclap_flags(self):
        """A SoftCLAP student's frozen teacher: our run's folder; a file is the student's start (its default)."""
        if self.file is None:
            return [f"--teacher_checkpoints_dir={self.save_path()}", f"--teacher_select={self.select}"]
        return []

    @property
    def deps(self):
        return [self.stage] if self.stage is not None else []


class SeedPlan:
    """The stages of one training seed (the input stages, e.g. the toy world, are shared).

    Arguments
    ---------
    hparams : dict
        The pipeline YAML's keys.
    seed : int
    world_stage : Stage
        The shared stage that makes the inputs (toy world, listing of the unpaired audio).
    world : str, optional
        The toy world's folder (the toy's sources when ``sources`` is None).
    sources : pipeline.sources.Sources, optional
        Where teacher, unpaired audio, captions and target sets come from.
    """

    def __init__(self, hparams, seed, world_stage, world=None, sources=None):
        if sources is None:
            from pipeline.sources import toy_sources

            sources = toy_sources(hparams, world)
        self.h, self.seed, self.src = hparams, seed, sources
        self.world = sources.world
        self.inputs = world_stage
        self.out = os.path.abspath(os.path.join(hparams["output_folder"], f"seed{seed}"))
        self.marker_dir = os.path.join(self.out, "stages")
        self.log_dir = os.path.join(self.out, "logs")
        self.teacher_save = os.path.join(self.out, "teacher", "save")
        self.stages = []
        self.zeroshot = {}  # (row key, target) -> stage
        self.curated = {}   # (row key, target) -> stage giving the curated CSV (DU: target None)
        self.students = {}  # (row key, target) -> (stage, save folder)
        self.selected = {}  # round -> selection stage (its outputs name the next teacher)
        self.pool_stage = None  # the merge of the caption pool, when it is more than the teacher's captions
        self.audit = None  # the leakage audit (pipeline.audit), before any student trains
        self._build()

    def stage(self, name, label, **kwargs):
        s = Stage(name, f"seed {self.seed} · {label}", marker_dir=self.marker_dir, log_dir=self.log_dir, **kwargs)
        self.stages.append(s)
        return s

    # -------------------------------------------------------- commands
    def training_flags(self, name, epochs, lr, base=None, yaml=None):
        base = base or (self.out if name == "teacher" else os.path.join(self.out, "students"))
        return self.src.train_data_flags() + [
            f"--output_base={base}", f"--experiment_name={name}", f"--seed={self.seed}",
            f"--number_of_epochs={epochs}", f"--batch_size={self.h['batch_size']}", f"--base_lr={lr}",
            "--noprogressbar"] + self.precision_flags() + self.model_flags(yaml)

    def model_flags(self, yaml=None):
        """The teacher file's architecture and the pipeline's ``model_flags`` (every model it trains and scores).

        With ``yaml`` (the stage's recipe YAML), a model or duration key that
        YAML does not have is left out (the DS step reads no audio, so it has
        no ``eval_duration``); any other flag is passed, so a misspelt key is
        still refused by the recipe.
        """
        flags = list(self.src.model_flags) + list(self.h.get("model_flags") or [])
        return flags if yaml is None else _flags_for(repo_path(yaml), flags)

    def precision_flags(self):
        """``--precision`` (none for fp32: those commands and digests stay as they were) and ``--device``."""
        precision = self.h["precision"]
        flags = [] if precision == "fp32" else [f"--precision={precision}"]
        return flags + ([f"--device={self.h['device']}"] if self.h.get("device") else [])

    def _build(self):
        h = self.h
        if self.src.teacher_run is not None:
            teacher = TeacherRef(save=self.src.teacher_run, select=h["teacher_select"], stage=self.inputs)
        elif self.src.teacher_file is None:
            stage = self.stage(
                "teacher", "teacher training", deps=[self.inputs],
                command=lambda: [repo_path(self.src.train_script), repo_path(h["train_hparams"])]
                + self.training_flags("teacher", h["teacher_epochs"], h["teacher_lr"], yaml=h["train_hparams"])
                + self.src.init_flags,
                outputs=lambda stdout: _training_outputs(self.teacher_save),
                note=_training_note, train_save=self.teacher_save, distributed=True,
            )
            teacher = TeacherRef(save=self.teacher_save, select=h["teacher_select"], stage=stage)
        else:
            teacher = TeacherRef(file=self.src.teacher_file, fmt=self.src.teacher_format, stage=self.inputs)
        self.teacher = teacher
        for target in self.src.scored:
            self.zeroshot[("teacher", target)] = self.zeroshot_stage("teacher", target, teacher)
        rounds = int(h.get("rounds") or 1)
        for r in range(1, rounds + 1):
            self._round(r, teacher)
            if r < rounds:
                teacher = self.selection_stage(r)

    def _round(self, r, teacher):
        """Curation with ``teacher`` and the students of round ``r``."""
        h = self.h
        prefix = "" if r == 1 else f"r{r}_"
        where = self.out if r == 1 else os.path.join(self.out, f"round{r}")
        label = "" if r == 1 else f"round {r} · "
        emb_dir = os.path.join(where, "curation", "save")
        caption_csv = self.src.caption_csv(self)
        toemb = self.stage(
            f"{prefix}embeddings", f"{label}curation embeddings (unpaired audio, teacher captions)",
            deps=teacher.deps + self.caption_deps(),
            command=lambda: [repo_path("recipes/microsoft_curation_toemb.py"), repo_path(h["toemb_hparams"]),
                             f"--output_folder={where}/curation"] + teacher.flags(clear_clap=True)
            + [f"--audio_pathfile={self.src.unpaired_list}", f"--text_pathfile={caption_csv()}", "--noprogressbar",
               # Always given: the YAML's default is the paper code's crop.
               f"--eval_crop={h['curation_eval_crop']}"]
            + self.precision_flags() + self.curation_model_flags(h["toemb_hparams"]),
            outputs=lambda stdout: existing_outputs({"audio_emb": os.path.join(emb_dir, "audio_emb.npy"),
                                                     "text_emb": os.path.join(emb_dir, "text_emb.npy")}),
            distributed=True,
        )
        if r == 1 and audit_policy(h) != "off" and self.src.scored:  # a label list alone has no evaluation clips
            self.audit = self.leakage_stages(teacher, toemb, emb_dir, caption_csv)
        if "du" in h["students"]:
            self.curated[(row_key("du", r), None)] = self.stage(
                f"{prefix}curation_du", f"{label}DU curation", deps=[toemb],
                command=lambda: [repo_path("recipes/retrieve_from_emb_thresh.py"), repo_path(h["du_hparams"]),
                                 f"--emb_dir={emb_dir}", "--audio_bs=1024",
                                 f"--sim_threshold={self.threshold('du', None, emb_dir)}",
                                 f"--caption_rows={h['caption_rows']}"],
                outputs=self.curation_outputs, note=_curation_note,
            )
        for target in self.src.curated_targets:
            self._curation_of(target, r, teacher, toemb, emb_dir, caption_csv, prefix, label)
        for kind in h["students"]:
            for target in ([None] if kind == "du" else self.src.curated_targets):
                self.student_stage(kind, target, teacher, r, caption_csv)

    def _curation_of(self, target, r, teacher, toemb, emb_dir, caption_csv, prefix, label):
        """The DS and ADS stages of one target set in round ``r``."""
        h = self.h
        info = self.src.targets[target]
        ds = self.stage(
            f"{prefix}curation_ds_{target}", f"{label}DS curation for {target}", deps=[toemb],
            command=lambda: [
                repo_path("recipes/retrieve_ds_t2t.py"), repo_path(h["ds_hparams"].format(set=info.short)),
                f"--target_csv_path={caption_csv()}"] + teacher.flags(clear_clap=True) + [
                f"--emb_dir={emb_dir}", f"--sim_threshold={threshold_flag(self.src.ds_threshold(target))}"]
            + info.ds_flags() + ["--noprogressbar"] + self.curation_model_flags(h["ds_hparams"].format(set=info.short))
            + self.precision_flags(),
            outputs=lambda stdout: _ds_outputs(emb_dir, info.caption_set), note=_curation_note,
        )
        self.curated[(row_key("ds", r), target)] = ds
        if any(s.startswith("ads") for s in h["students"]):
            key = (row_key("ds", r), target)
            self.curated[(row_key("ads", r), target)] = self.stage(
                f"{prefix}curation_ads_{target}", f"{label}ADS curation for {target}", deps=[ds],
                command=lambda: [
                    repo_path("recipes/retrieve_from_emb_thresh.py"),
                    repo_path(h["ads_hparams"].format(set=info.short)),
                    f"--emb_dir={emb_dir}", f"--aud_ds_path={self.src.unpaired_list}",
                    "--audio_bs=1024", f"--sim_threshold={self.threshold('ads', target, emb_dir)}",
                    f"--caption_rows={h['caption_rows']}"] + info.ads_flags(),
                outputs=self.curation_outputs, note=_curation_note,
                skip=lambda: None if self.pairs(key) else "no DS captions to match",
            )

    def leakage_stages(self, teacher, toemb, emb_dir, caption_csv):
        """The teacher's embeddings of the evaluation clips and the pair set's clips, then the audit (one per seed)."""
        h = self.h
        folder = os.path.join(self.out, "leakage")
        scored = {t: (self.src.targets[t].dataset, self.src.targets[t].folder) for t in self.src.scored}
        def command():
            # The clips are listed when the stage starts (the teacher's training pairs exist by then); like the
            # zero-shot stages, the target folders are named by path.
            write_audit_list(folder, scored, caption_csv())
            return [repo_path("recipes/microsoft_curation_toemb.py"), repo_path(h["toemb_hparams"]),
                    f"--output_folder={folder}", f"--audio_pathfile={folder}/audit_paths.txt", "--text_pathfile=",
                    "--noprogressbar", f"--eval_crop={h['curation_eval_crop']}"] + teacher.flags(clear_clap=True) \
                + self.precision_flags() + self.curation_model_flags(h["toemb_hparams"])

        embed = self.stage(
            "leakage_embeddings", "leakage audit: evaluation and training-pair clips embedded",
            deps=teacher.deps + self.caption_deps(), command=command,
            outputs=lambda stdout: existing_outputs({"audio_emb": os.path.join(folder, "save", "audio_emb.npy")}),
            distributed=True,
        )
        return self.stage(
            "leakage", "leakage audit", deps=[toemb, embed],
            command=lambda: ["leakage", *map(str, audit_settings(h)), emb_dir, folder],
            run=lambda: run_audit(folder, emb_dir, self.seed, h),
            note=lambda out: (f"{out['unpaired']} of {out['checked_unpaired']} unpaired clips and {out['pairs']} of "
                              f"{out['checked_pairs']} training-pair clips are evaluation clips "
                              f"({out['exact']} exact, {out['near']} near; {out['policy']})"),
        )

    def audited(self, path):
        """A CSV a student reads, without the clips the audit dropped (the same path when none)."""
        return clean_csv(path, leaked_paths(self.audit), os.path.join(self.out, "leakage", "clean"))

    def caption_deps(self):
        """The stage that merges the caption pool of this seed (made once; none for the teacher's captions)."""
        pool = self.src.caption_pool(self)
        if pool is None:
            return []
        if self.pool_stage is None:
            files, with_teacher = pool
            target = self.src.caption_csv(self)()
            teacher_csv = [os.path.join(self.teacher_save, "train_raw.csv")] if with_teacher else []
            self.pool_stage = self.stage(
                "caption_pool", "caption pool", deps=[self.inputs] + (self.teacher.deps if with_teacher else []),
                command=lambda: ["caption_pool", target] + files + (["teacher"] if with_teacher else []),
                run=lambda: merge_caption_pool(target, teacher_csv + files))
        return [self.pool_stage]

    def curation_model_flags(self, yaml):
        """Architecture flags of the curation recipes (whose YAMLs describe MS CLAP), then ``model_flags``."""
        return list(self.src.curation_flags) + self.model_flags(yaml)

    def threshold(self, kind, target, emb_dir):
        """The DU / ADS threshold flag: the YAML value, or the clip-fraction quantile of the teacher's cosines."""
        value = self.src.fixed_threshold(kind, target)
        if value is not None:
            return threshold_flag(value)
        caption_set = "text" if kind == "du" else self.src.targets[target].caption_set
        return threshold_flag(cosine_threshold(emb_dir, caption_set, self.h[f"{kind}_clip_fraction"]))

    def curation_outputs(self, stdout):
        path = printed_path(stdout, "Curation CSV: ")
        out = existing_outputs({"csv": path})
        out["pairs"] = count_rows(path)
        out["threshold"] = _threshold_from_name(path)
        out["pair_precision"] = pair_precision(path, self.world) if self.world else None
        return out

    def pairs(self, key):
        """Rows of a finished curation stage (0 if it was not run)."""
        stage = self.curated.get(key)
        return (stage.result or {}).get("outputs", {}).get("pairs", 0) if stage else 0

    def csv(self, key):
        return self.curated[key].result["outputs"]["csv"]

    def student_stage(self, kind, target, teacher, r, caption_csv):
        h = self.h
        name = kind if target is None else f"{kind}_{target}"
        where = self.out if r == 1 else os.path.join(self.out, f"round{r}")
        save = os.path.join(where, "students", name, "save")
        base = kind.replace("_softclap", "")
        replay_key = (row_key("ds", r), target) if base in ("ds", "ads") else None
        curated = (row_key("du", r), None) if base == "du" else ((row_key("ads", r), target) if base == "ads" else None)
        deps = teacher.deps + [self.curated[k] for k in (replay_key, curated) if k] + \
            ([self.audit] if self.audit is not None else [])

        def command():
            replay = self.audited(self.csv(replay_key) if replay_key else self.src.replay_csv(self, caption_csv))
            prob = float(h["curation_prob"]) if curated else 0.0
            replay_batches = max(1, count_rows(replay) // int(h["batch_size"]))
            # Replay batches per student_steps: every step is one with replace; a share 1 - p with insert.
            replay_share = 1.0 if h["curation_mixing"] == "replace" else 1.0 - prob
            epochs = max(1, round(int(h["student_steps"]) * replay_share / replay_batches))
            script, yaml_file = self.src.train_script, h["train_hparams"]
            # Our variants are the toy YAMLs' defaults: a flag only for the paper's (earlier digests stay valid).
            extra = [f"--curation_mixing={h['curation_mixing']}"] if curated and h["curation_mixing"] != "insert" \
                else []
            if kind.endswith("softclap"):
                script, yaml_file = "recipes/softclap_train.py", h["softclap_hparams"]
                extra += teacher.softclap_flags() + [f"--softclap_beta={h['softclap_beta']}"]
                if h["softclap_targets"] != "normalized":
                    extra.append(f"--softclap_targets={h['softclap_targets']}")
            flags = self.training_flags(name, epochs, h["student_lr"], base=os.path.join(where, "students"),
                                        yaml=yaml_file) + [
                f"--train_csv_path={replay}"] + teacher.flags() + [f"--curation_prob={prob}"]
            if curated:
                flags.append(f"--curation_csv={self.audited(self.csv(curated))}")
            return [repo_path(script), repo_path(yaml_file)] + flags + extra

        def skip():
            if replay_key and self.pairs(replay_key) < int(h["batch_size"]):
                return f"fewer DS pairs ({self.pairs(replay_key)}) than one batch ({h['batch_size']})"
            if curated and not self.pairs(curated):
                return "no curated pairs"
            return None

        round_label = "" if r == 1 else f"round {r} · "
        label = f"{round_label}{ROWS[kind]} student" + (f" for {target}" if target else "")
        stage = self.stage(f"{'' if r == 1 else f'r{r}_'}student_{name}", label, deps=deps, command=command,
                           skip=skip, outputs=lambda stdout: _training_outputs(save), note=_training_note,
                           train_save=save, distributed=True)
        key = row_key(kind, r)
        self.students[(key, target)] = (stage, save)
        model = TeacherRef(save=save, select=h["student_select"], stage=stage)
        for t in (self.src.scored if target is None else [t for t in [target] if t in self.src.scored]):
            self.zeroshot[(key, t)] = self.zeroshot_stage(
                name if r == 1 else f"r{r}_{name}", t, model, base=os.path.join(where, "zeroshot") if r > 1 else None)

    def zeroshot_stage(self, model_name, target, model, base=None):
        base = base or os.path.join(self.out, "zeroshot")
        folder = os.path.join(base, f"{model_name}_{target}")
        info = self.src.targets[target]
        return self.stage(
            f"zeroshot_{model_name}_{target}", f"zero-shot {model_name} on {target}", deps=model.deps,
            command=lambda: [repo_path("recipes/microsoft_zeroshot.py"),
                             repo_path(self.h["zeroshot_hparams"].format(set=info.zeroshot_dir)),
                             f"--dataset={info.dataset}", f"--data_folder={info.folder}"] + model.flags()
            + [f"--output_base={base}", f"--experiment_name={model_name}_{target}",
               f"--seed={self.seed}", "--noprogressbar"] + self.precision_flags()
            + self.model_flags(self.h["zeroshot_hparams"].format(set=info.zeroshot_dir)),
            outputs=lambda stdout: _zeroshot_outputs(folder),
            note=lambda out: f"top-1 {out['top1']:.3f}",
            skip=lambda: (model.stage.result or {}).get("skipped") and "its model was not trained",
        )

    # ---------------------------------------------------- self-training
    def selection_stage(self, r):
        """Round ``r``'s best student, scored on held-out captions (never a target's test clips): the next teacher.

        Each trained student is scored by text→audio R@1 on the selection CSV
        (``retrieval_eval.py`` with ``dataset: csv``); the highest wins (the
        first in table order on a tie). With one candidate there is nothing to
        compare and it is chosen as it is.
        """
        h = self.h
        candidates = [(key, target, stage, save) for (key, target), (stage, save) in self.students.items()
                      if row_round(key) == r]
        scores = []
        selection_csv = self.src.selection_csv(self)
        if len(candidates) > 1:
            for key, target, stage, save in candidates:
                name = key.split("@")[0] + (f"_{target}" if target else "")
                folder = os.path.join(self.out, f"round{r}" if r > 1 else "", "selection", name)
                model = TeacherRef(save=save, select=h["student_select"], stage=stage)
                scores.append(self.stage(
                    f"r{r}_select_{name}", f"round {r} · held-out R@1 of {name}",
                    deps=model.deps + self.caption_deps(),
                    command=lambda model=model, name=name, folder=folder: [
                        repo_path("recipes/retrieval_eval.py"), repo_path(h["retrieval_hparams"]), "--dataset=csv",
                        f"--data_folder={selection_csv()}"] + model.flags()
                    + [f"--output_base={os.path.dirname(folder)}", f"--experiment_name={name}", "--noprogressbar"]
                    + self.precision_flags() + self.model_flags(h["retrieval_hparams"]),
                    outputs=lambda stdout, folder=folder: _retrieval_outputs(folder),
                    note=lambda out: f"R@1 {out['r1']:.3f}",
                    skip=lambda stage=stage: (stage.result or {}).get("skipped") and "not trained",
                ))

        def choose():
            best = None
            for (key, target, stage, save), score in zip(candidates, scores or [None] * len(candidates)):
                if (stage.result or {}).get("skipped"):
                    continue
                value = ((score.result or {}).get("outputs") or {}).get("r1") if score else None
                if best is None or (value is not None and (best[2] is None or value > best[2])):
                    best = (key, target, value, save)
            if best is None:
                raise RuntimeError(f"round {r}: no student was trained, so there is no next teacher")
            return {"save": best[3], "row": row_title(best[0]), "target": best[1] or "", "r1": best[2]}

        stage = self.stage(f"r{r}_selection", f"round {r} · next teacher",
                           deps=[c[2] for c in candidates] + scores, run=choose,
                           note=lambda out: f"{out['row']}" + (f" for {out['target']}" if out["target"] else "")
                           + (f", R@1 {out['r1']:.3f}" if out.get("r1") is not None else " (the only student)"))
        self.selected[r] = stage
        return TeacherRef(save=lambda: stage.result["outputs"]["save"], select=h["student_select"], stage=stage)


#: Keys a recipe YAML may lack although the pipeline gives them to every stage: the model and the durations.
_MODEL_KEYS = ("audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "classes_num",
               "out_emb", "text_model", "txt_emb_dim", "d_proj", "audio_width", "text_pooling", "audio_options",
               "projection", "text_max_length", "eval_duration", "train_duration")
_YAML_KEYS = {}


def _flags_for(yaml_path, flags):
    """``flags`` without the model / duration keys that ``yaml_path`` lacks (its top-level keys, read once)."""
    import re

    if yaml_path not in _YAML_KEYS:
        with open(yaml_path, encoding="utf-8") as f:
            _YAML_KEYS[yaml_path] = {m.group(1) for m in re.finditer(r"^([A-Za-z_][\w]*)\s*:", f.read(), re.M)}
    keys = _YAML_KEYS[yaml_path]

    def keep(flag):
        key = flag[2:].split("=", 1)[0] if flag.startswith("--") else None
        return key is None or key in keys or key not in _MODEL_KEYS

    return [f for f in flags if keep(f)]


def _training_outputs(save):
    if not checkpoint_dirs(save):
        raise ValueError(f"no checkpoint in {save}")
    log = read_text(os.path.join(os.path.dirname(save), "train_log.txt")) or ""
    last = [line for line in log.splitlines() if line.startswith("epoch")]
    return {"save": save, "last_epoch": last[-1] if last else ""}


def _training_note(out):
    line = out.get("last_epoch", "")
    return line.split(" - ", 1)[-1] if line else ""


def _ds_outputs(emb_dir, caption_set):
    path = os.path.join(emb_dir, f"{caption_set}_pairs.csv")
    out = existing_outputs({"csv": path, "emb": os.path.join(emb_dir, f"{caption_set}_emb.npy")})
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


def _retrieval_outputs(folder):
    path = os.path.join(folder, "retrieval_results.json")
    results = read_json_or_none(path)
    if results is None:
        raise ValueError(f"missing {path}")
    return {"json": path, "r1": results["text_to_audio"]["R@1"]}
