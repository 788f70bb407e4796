"""The paper code's YAML keys on our command lines: each is translated, honoured or ignored with a reason.

The YAMLs of the paper's code (zhepeiw/clap_curation, ``hparams/**``) name
some hyperparameters differently from ours, and hold many keys that are
objects or are never read. Every top-level key of its YAMLs for the commands
of its README (listed in ``tests/fixtures/paper_code_yaml_keys.json``) is
accepted as a ``--key=value`` override here, in one of four ways:

- a key our YAML has (``seed``, ``batch_size``, ..., and the paper code's keys
  that are real keys of ours: ``time_stamp``, ``overfit_size``,
  ``global_contrastive``, ``num_ckpt_keep``, ``num_epoch_save``,
  ``use_wandb``, ``aud_svpth``, ``txt_svpth``, ``output_emb_path``): nothing
  to translate; ``auto_mix_prec`` is SpeechBrain's
  run option (``--auto_mix_prec=False`` is accepted as a switch, see
  :func:`experiment.arguments.split_arguments`);
- :class:`Alias`: renamed (and its value converted) to our key with the same
  meaning, e.g. ``--freeze_txt_emb=True`` is ``--freeze_text_base=True``;
- :class:`Ignored`: accepted with a warning that says why it has no effect
  (never read by the paper's scripts, an object the YAML builds, ...) and
  what replaces it;
- :class:`Elsewhere`: a real key added by another part of the project (its
  absence from a YAML is an error naming what provides it).

:func:`translate_overrides` applies :data:`PAPER_KEYS` to the overrides of a
run before :func:`experiment.inputs.check_overrides` checks them, so the
checks, the saved ``hyperparams.yaml`` and the run see our keys only. A key
given twice (an alias and our key, or two aliases of one key) with different
values is an error naming both flags.

``time_stamp`` (the paper code's per-run folder suffix) is resolved here too
(:func:`derive_output_folder`): given, the output folder is the paper code's
``<output_base>/<time_stamp>_seed_<seed>+<experiment_name>``; not given (the
default), ours, ``<output_base>/<experiment_name>``, which a resumed run finds
again.
"""

import dataclasses
import datetime
import json
import os
import re
from typing import Callable, Optional

__all__ = ["Alias", "Ignored", "Elsewhere", "PAPER_KEYS", "classify", "translate_overrides", "derive_output_folder",
           "STAMP_NOW", "prompt_template"]

#: ``--time_stamp=now``: the current time in the paper code's format (``%Y-%m-%d+%H-%M-%S``).
STAMP_NOW = "now"


# ------------------------------------------------------------------ entries
@dataclasses.dataclass(frozen=True)
class Alias:
    """``--<paper key>=v`` means ``--<key>=convert(v)`` in a YAML that has ``key``.

    Arguments
    ---------
    key : str
        Our key.
    convert : callable, optional
        value -> our value (default: the same value); may instead return a
        dict ``{our key: value}`` when one paper key sets several of ours.
    note : str
        What differs, if anything (for the README table).
    """

    key: str
    convert: Optional[Callable] = None
    note: str = ""

    def applies(self, yaml_keys):
        return self.key in yaml_keys


def _applies_if_needed_key(entry, yaml_keys):
    """True when the entry's ``needs`` key is None (any YAML) or one of ``yaml_keys``."""
    return entry.needs is None or entry.needs in yaml_keys


@dataclasses.dataclass(frozen=True)
class Ignored:
    """Accepted with a warning: ``reason`` says why it has no effect and what replaces it.

    ``needs``: the entry applies only to a YAML with this key (None: any YAML).
    """

    reason: str
    needs: Optional[str] = None
    applies = _applies_if_needed_key


@dataclasses.dataclass(frozen=True)
class Elsewhere:
    """A real key of our YAMLs provided by another part of the project (``owner`` says which).

    ``needs``: the entry applies only to a YAML with this key (None: any YAML).
    """

    owner: str
    needs: Optional[str] = None
    applies = _applies_if_needed_key


# ------------------------------------------------------------- conversions
def prompt_template(prompt):
    """The zero-shot template of the paper code's prompt prefix: the prefix, one space, ``{label}``.

    The paper code writes ``prompt + label`` with ``"this is a sound of "``
    (trailing space); a command-line value loses its trailing space on the
    way through YAML, so the space is restored rather than gluing the label
    on. A prompt that already holds ``{label}`` is a template as it is.

    Example
    -------
    >>> prompt_template("this is a sound of "), prompt_template("this is a sound of"), prompt_template("{label} here")
    ('this is a sound of {label}', 'this is a sound of {label}', '{label} here')
    """
    if not isinstance(prompt, str):
        raise SystemExit(f"expected a prompt text such as 'this is a sound of ', got {prompt!r}")
    if "{label}" in prompt:
        return prompt
    return (prompt.rstrip() + " {label}") if prompt.strip() else "{label}"


def _templates(prompt):
    return [prompt_template(prompt)]


def _prefix(prompt):
    """Our DS prompt prefix (concatenated with the label): the paper code's, ending with one space."""
    template = prompt_template(prompt)
    if not template.endswith("{label}") or template.count("{label}") != 1:
        raise SystemExit(f"the DS prompt is a prefix of the label; got {prompt!r}")
    return template[: -len("{label}")]


def _loader_opts(batch_key, workers_key="num_workers", workers=True):
    """Splits the paper code's ``*_dataloader_opts`` mapping into our batch-size and worker keys.

    ``shuffle``/``drop_last`` must be false: an embedding step keeps every
    row in order (so do the paper code's YAMLs).
    """

    def convert(opts):
        if not isinstance(opts, dict):
            raise SystemExit(f"expected a mapping such as {{batch_size: 32, num_workers: 4}}, got {opts!r}")
        ours = {}
        for name, value in opts.items():
            if name == "batch_size":
                ours[batch_key] = value
            elif name == "num_workers" and workers:
                ours[workers_key] = value
            elif name in ("shuffle", "drop_last"):
                if value:
                    raise SystemExit(f"{name}: True is not supported: the embedding step keeps every row, in order")
            elif name != "num_workers":
                raise SystemExit(f"no option {name!r} here; give batch_size and num_workers")
        return ours

    return convert


# ------------------------------------------------------------------ the table
_OBJECT = "an object the paper code's YAML builds ({what}); ours: {ours}"
_NEVER_READ = "never read by the paper code's scripts"
_NO_TRAINING = "the paper code's {script} trains nothing (a leftover of its training template)"
_FILES = "i12-files: reading the paper code's label-encoder and embedding files"
_CKPT = "i12-ckpt: checkpoint selection (highest acc / lowest loss / latest)"
_WARMUP = ("read only by the paper code's SimSiamCosineScheduler, which its YAMLs leave commented out (its "
           "schedule is ReduceLROnPlateau, without warm-up; ours: lr_schedule, and warmup_steps for our cosine)")

#: paper key -> entries tried in order; the first that applies to the YAML decides. A key our YAML has is never
#: looked up here.
PAPER_KEYS = {
    # ---------------------------------------------------------------- model (every script)
    "shared_emb_dim": (Alias("d_proj"),),
    "aud_emb_dim": (Alias("out_emb"),),
    "aud_emb_classes_num": (Alias("classes_num"),),
    "freeze_txt_emb": (Alias("freeze_text_base", note="ours also runs the frozen tower in eval mode "
                                                     "(no dropout), the paper code only stops its gradients"),),
    "freeze_aud_emb": (Alias("freeze_audio_base", note="ours also runs the frozen tower in eval mode "
                                                      "(BatchNorm statistics frozen), the paper code only stops "
                                                      "its gradients"),),
    "emb_norm_type": (Ignored(_NEVER_READ + " (the MS CLAP projection always ends with LayerNorm)"),),
    "temp_tau": (Ignored(_NEVER_READ + " (the temperature is the model's learned logit_scale, clamped at "
                         "max_logit_scale)"),),
    "clap": (Ignored(_OBJECT.format(what="the CLAP model", ours="model, built from the model keys")),),
    "teacher_clap": (Ignored(_OBJECT.format(what="the SoftCLAP teacher", ours="teacher_model, a copy of model")),),
    "txt_tokenizer": (Ignored(_OBJECT.format(what="the BERT tokenizer", ours="tokenizer, from text_model")),),
    "modules": (Ignored(_OBJECT.format(what="the Brain's modules", ours="none needed: the embedding step "
                                       "runs the model itself")),),
    "np_rng": (Ignored(_OBJECT.format(what="a numpy RandomState never used", ours="every random draw is seeded "
                                      "from seed")),),
    # ---------------------------------------------------------------- run folder and logging
    "time_stamp": (Ignored("the paper code's run-folder suffix; only the training, zero-shot and embedding "
                           "YAMLs use it"),),
    "output_base": (Ignored("the paper code's results root; this script's output is named by its own keys"),),
    "experiment_name": (Ignored("the paper code's run name; this script's output is named by its own keys"),),
    "train_log": (Ignored("the paper code's embedding step writes nothing to it; ours logs to "
                          "<output_folder>/log.txt", needs="audio_pathfile"),),
    "save_folder": (Ignored("the paper code saves its test_stats.pt there; ours writes zeroshot_results.json, "
                            "predictions.csv and the other results into output_folder", needs="prompt_templates"),),
    "use_wandb": (Ignored("the paper code's embedding step logs no statistics (its W&B run stays empty)"),),
    "train_log_frequency": (Ignored("the paper code's per-step W&B record holds only a sample counter (its loss "
                                    "buffer is never filled); ours logs the curves per epoch (use_wandb, "
                                    "use_tensorboard, train_curves.png)"),),
    "wandb_logger_fn": (Ignored(_OBJECT.format(what="its W&B logger, entity CAL", ours="use_wandb with "
                                               "wandb_project and wandb_entity")),),
    "train_logger": (Ignored(_OBJECT.format(what="a file logger the embedding step never writes to",
                                            ours="SpeechBrain's log.txt")),),
    "datapoint_counter": (Ignored(_OBJECT.format(what="a samples-seen counter for W&B", ours="the epoch is the "
                                                 "curves' x axis")),),
    "recoverables": (Ignored(_OBJECT.format(what="what its checkpoints hold", ours="checkpointer, with the "
                                            "model, epoch counter, optimiser, RNG and mixer")),),
    # ---------------------------------------------------------------- data of training
    "prepare_annot_csv_fn": (Ignored(_OBJECT.format(what="the corpus preparer", ours="data_annot_folder and the "
                                                    "corpus keys (dataset/prepare_insper.py)")),),
    "dataio_annot_prep_fn": (Ignored(_OBJECT.format(what="the training data pipeline",
                                                    ours="dataset/pipelines.py")),),
    "dataio_curation_prep_fn": (Ignored(_OBJECT.format(what="the curated data pipeline",
                                                       ours="dataset/pipelines.py")),),
    "prepare_zs_csv_fn": (Ignored(_OBJECT.format(what="the zero-shot set preparer", ours="zs_dataset, "
                                                 "data_zs_folder, zs_folds")),),
    "dataio_zs_prep_fn": (Ignored(_OBJECT.format(what="the zero-shot data pipeline",
                                                 ours="dataset/pipelines.py")),),
    "zs_valid_folds": (Alias("zs_folds"),),
    "zs_train_folds": (Ignored("the paper code writes these folds to a CSV that nothing reads; the zero-shot "
                               "validation scores zs_valid_folds (ours: zs_folds)"),),
    "zs_test_folds": (Ignored("the paper code writes these folds to a CSV that nothing reads; the zero-shot "
                              "validation scores zs_valid_folds (ours: zs_folds)"),),
    "zs_text_prompt": (Alias("zs_prompt_templates", _templates, note="prefix + label becomes the template "
                             "'<prefix> {label}'"),),
    "zs_label_encoder_path": (Elsewhere(_FILES),),
    # ---------------------------------------------------------------- training
    "use_maxacc_ep": (Elsewhere(_CKPT),),
    "use_minloss_ep": (Elsewhere(_CKPT),),
    "warmup_epochs": (Ignored(_WARMUP),),
    "warmup_lr": (Ignored(_WARMUP),),
    "lr_scheduler_fn": (Ignored(_OBJECT.format(what="SpeechBrain's ReduceLROnPlateau (factor 0.1, patience 10, "
                                               "not before epoch 10, floor final_lr)", ours="lr_schedule and the "
                                               "lr_plateau_* keys")),),
    "epoch_counter_fn": (Ignored(_OBJECT.format(what="the epoch counter", ours="epoch_counter, limit "
                                                "number_of_epochs")),),
    "compute_cross_sim_cost": (Ignored(_OBJECT.format(what="the contrastive / SoftCLAP loss", ours="loss, set "
                                                      "by softclap_beta and softclap_targets")),),
    "compute_zs_cost": (Ignored(_OBJECT.format(what="a cross-entropy the SoftCLAP script never calls",
                                               ours="zero-shot validation scores accuracy")),),
    "acc_metric": (Ignored(_OBJECT.format(what="SpeechBrain's AccuracyStats", ours="evaluation/zeroshot.py")),),
    # ------------------------------------------ zero-shot and embedding scripts (they train nothing)
    "number_of_epochs": (Ignored(_NO_TRAINING.format(script="zero-shot / embedding script")),),
    "base_lr": (Ignored(_NO_TRAINING.format(script="zero-shot script")),),
    "final_lr": (Ignored(_NO_TRAINING.format(script="zero-shot script")),),
    "opt_class": (Ignored(_NO_TRAINING.format(script="zero-shot / embedding script")),),
    "epoch_counter": (Ignored(_NO_TRAINING.format(script="zero-shot / embedding script")),),
    "checkpointer": (Ignored(_NO_TRAINING.format(script="zero-shot / embedding script")
                             + "; the model comes from clap_ckpt_path / ssl_checkpoints_dir"),),
    "prev_checkpointer": (Ignored(_NO_TRAINING.format(script="zero-shot script")),),
    "compute_cost": (Ignored(_NO_TRAINING.format(script="zero-shot / embedding script")),),
    "train_dataloader_opts": (Ignored(_NO_TRAINING.format(script="zero-shot script")),),
    "ssl_checkpointer": (Ignored(_OBJECT.format(what="a Checkpointer over ssl_checkpoints_dir",
                                                ours="ssl_checkpoints_dir (empty: none) and ssl_select")),),
    # ---------------------------------------------------------------- zero-shot
    "duration": (Alias("eval_duration", note="the paper code crops a longer clip at random, ours "
                       "deterministically (eval_crop)"),),
    "text_prompt": (Alias("prompt_templates", _templates, note="prefix + label becomes the template "
                          "'<prefix> {label}'"),
                    Alias("prompt_prefix", _prefix, note="a prefix ending with one space")),
    "test_folds": (Alias("folds"),),
    "train_folds": (Ignored("the paper code's zero-shot script scores test_folds only (ours: folds)"),),
    "valid_folds": (Ignored("the paper code's zero-shot script scores test_folds only (ours: folds)"),),
    "valid_dataloader_opts": (Alias("test_dataloader_opts", note="the paper code's zero-shot loader options"),),
    "prepare_split_csv_fn": (Ignored(_OBJECT.format(what="the set's preparer", ours="dataset, data_folder, "
                                                    "folds")),),
    "n_classes": (Ignored(_NEVER_READ + " (the classes are those of the label list)"),),
    "label_encoder_path": (Elsewhere(_FILES),),
    # ---------------------------------------------------------------- curation: embedding step
    "audio_batch_size": (Alias("batch_size"),
                         Ignored("the paper code's DS step reads no audio")),
    "train_duration": (Alias("eval_duration", note="the paper code crops a longer clip at random, ours "
                             "deterministically (eval_crop)"),
                       Ignored("the paper code's DS step reads no audio")),
    "audio_dataloader_opts": (Alias("batch_size", _loader_opts("batch_size")),),
    "text_dataloader_opts": (Alias("text_batch_size", _loader_opts("text_batch_size", workers=False),
                                   note="its num_workers is not used: captions are tokenised in the main process"),),
    "audio_dataset": (Ignored(_OBJECT.format(what="the audio list or embeddings dataset",
                                             ours="audio_pathfile (embedding) / emb_dir and aud_ds_path (joins)")),),
    "text_dataset": (Ignored(_OBJECT.format(what="the caption dataset", ours="text_pathfile (embedding) / emb_dir "
                                            "and caption_set (joins)")),),
    # ---------------------------------------------------------------- curation: DS (text-text)
    "target_root_dir": (Ignored(_NEVER_READ + " (its only use is commented out)"),),
    "target_dataset": (Ignored(_OBJECT.format(what="the caption dataset over target_csv_path",
                                              ours="target_csv_path")),),
    "target_emb_path": (Elsewhere(_FILES),),
    "output_csv_path": (Alias("ds_pairs_csv", note="ours adds the columns similarity and label"),),
    # ---------------------------------------------------------------- curation: DU / ADS joins
    "aud_emb_path": (Elsewhere(_FILES),),
    "txt_emb_path": (Elsewhere(_FILES),),
    "txt_ds_path": (Elsewhere(_FILES),),
    "output_path": (Alias("curation_csv", note="ours adds the column similarity"),),
}


# --------------------------------------------------------------------- lookup
def classify(key, yaml_keys):
    """How ``--key`` is taken by a YAML with ``yaml_keys``.

    Returns
    -------
    ("native", None), ("run_option", None) (a SpeechBrain run option such as ``auto_mix_prec``, which the
    paper code's YAMLs also hold), ("alias", Alias), ("ignored", Ignored), ("elsewhere", Elsewhere) or
    ("unknown", None).

    Example
    -------
    >>> classify("freeze_txt_emb", {"freeze_text_base"})[0], classify("seed", {"seed"})[0], classify("x", set())[0]
    ('alias', 'native', 'unknown')
    """
    if key in yaml_keys:
        return "native", None
    from experiment.arguments import _run_option_arity

    if key in _run_option_arity():
        return "run_option", None
    for entry in PAPER_KEYS.get(key, ()):
        if entry.applies(yaml_keys):
            kind = {Alias: "alias", Ignored: "ignored", Elsewhere: "elsewhere"}[type(entry)]
            return kind, entry
    return "unknown", None


def _yaml_defaults(param_file):
    from experiment.inputs import _load_round_trip

    with open(param_file, encoding="utf-8") as f:
        return _load_round_trip(f) or {}


def _raw_lines(overrides):
    """``{key: value text}`` of one-line ``key: value`` overrides (None for a key whose value spans lines)."""
    raw, key = {}, None
    for line in overrides.splitlines():
        match = re.match(r"^([A-Za-z_][\w.-]*)\s*:\s?(.*)$", line)
        if match:
            key = match.group(1)
            raw[key] = match.group(2).strip()
        elif key is not None and line.strip():
            raw[key] = None
    return raw


def _tagged(value):
    from experiment.inputs import _tag

    return bool(_tag(value))


def _plain(value):
    """A round-trip YAML value as plain Python (for conversions and comparisons)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    return value


def _same(a, b):
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def _as_text(value):
    """A plain value as one line of YAML (JSON is a subset of YAML's flow style)."""
    return json.dumps(value, ensure_ascii=False)


def _warn(message):
    from experiment.arguments import warn_now

    warn_now(message)


# ------------------------------------------------------------------ translation
def translate_overrides(param_file, overrides):
    """The overrides of a run with the paper code's keys translated to ours (see the module docstring).

    Arguments
    ---------
    param_file : str
        The hyperpyyaml file of the run.
    overrides : str
        One ``key: value`` line per override (as :func:`experiment.arguments.overrides_to_yaml` writes).

    Returns
    -------
    str
        The overrides in our keys: aliases renamed and converted, ignored keys
        dropped (each with a warning saying why), ``time_stamp`` turned into the
        output folder. Unchanged (same object) when nothing was translated.

    Raises
    ------
    SystemExit
        A key given twice with different values (an alias and ours), a value
        an alias cannot convert, or a key another part of the project provides
        that this YAML lacks.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("d_proj: 1024\\nfreeze_text_base: False\\n")
    >>> print(translate_overrides(path, "shared_emb_dim: 512\\nfreeze_txt_emb: True"))
    d_proj: 512
    freeze_text_base: True
    """
    if not overrides or not isinstance(overrides, str) or not os.path.isfile(param_file):
        return overrides
    import ruamel.yaml

    from experiment.inputs import _load_round_trip

    try:
        given = _load_round_trip(overrides)
    except ruamel.yaml.YAMLError:
        return overrides  # check_overrides names the line at fault
    if not isinstance(given, dict) or not given:
        return overrides
    defaults = _yaml_defaults(param_file)
    yaml_keys = {str(k) for k in defaults}
    raw = _raw_lines(overrides)
    out, source, problems, changed = {}, {}, [], False
    for key, value in given.items():
        key = str(key)
        kind, entry = classify(key, yaml_keys)
        if kind in ("native", "unknown"):
            produced = {key: raw[key] if raw.get(key) is not None else None}
            plain = {key: value}
        elif kind == "ignored":
            _warn(f"--{key} (a key of the paper code's YAML) is ignored: {entry.reason}.")
            changed = True
            continue
        elif kind == "elsewhere":
            problems.append(f"--{key}: a key of the paper code's YAMLs that {param_file} does not have yet "
                            f"({entry.owner}).")
            continue
        else:
            changed = True
            if entry.convert is None:
                converted = {entry.key: value}
                produced = {entry.key: raw.get(key)}
            else:
                if _tagged(value):
                    problems.append(f"--{key}: give a plain value (it is converted to --{entry.key}).")
                    continue
                try:
                    result = entry.convert(_plain(value))
                except SystemExit as err:
                    problems.append(f"--{key}={raw.get(key) or value}: {err}")
                    continue
                converted = result if isinstance(result, dict) else {entry.key: result}
                produced = {k: _as_text(v) for k, v in converted.items()}
            plain = converted
        for our_key, text in produced.items():
            value_here = plain[our_key]
            if our_key in out:
                first = source[our_key]
                if not _same(_plain(out[our_key][0]), _plain(value_here)):
                    problems.append(
                        f"--{first} and --{key} both set {our_key} ({'our key' if first == our_key else 'alias'} "
                        f"and {'our key' if key == our_key else 'alias'}), with different values "
                        f"({raw.get(first) or out[our_key][0]!r} vs {raw.get(key) or value!r}): give one of them."
                    )
                continue
            out[our_key] = (value_here, text)
            source[our_key] = key
    if problems:
        raise SystemExit("\n".join(problems))
    values = {k: v[0] for k, v in out.items()}
    folder = derive_output_folder(values, defaults)
    if folder is not None:
        if values.get("time_stamp") is not None and values["time_stamp"] != out["time_stamp"][0]:
            out["time_stamp"] = (values["time_stamp"], _as_text(values["time_stamp"]))  # "now", resolved
        out["output_folder"] = (folder, folder)
        changed = True
    if not changed:
        return overrides
    lines = []
    for key, (value, text) in out.items():
        if text is None:
            if _tagged(value):
                raise SystemExit(f"--{key}: a tagged value must fit on one line")
            text = _as_text(_plain(value))
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def derive_output_folder(given, defaults):
    """The ``output_folder`` override the paper code's ``time_stamp`` / ``output_base`` imply, or None.

    - ``--output_folder`` given: it wins (None).
    - ``--time_stamp=<stamp>`` given (not null): the paper code's run folder,
      ``<output_base>/<stamp>_seed_<seed>+<experiment_name>``; ``now`` is the
      current time as the paper code writes it (``2024-05-01+13-45-10``), a new
      folder per run like the paper code's (give the printed stamp again to
      resume that run).
    - else, in a YAML whose ``output_folder`` must be given (the embedding
      step) and ``--output_base`` given: ``<output_base>/<experiment_name>``.
    - else None: our folder, ``<output_base>/<experiment_name>``, the same for
      the same command, which is what resuming relies on.

    Example
    -------
    >>> derive_output_folder({"time_stamp": "2024-05-01+13-45-10"}, {"output_folder": "x", "time_stamp": None})
    '!ref <output_base>/<time_stamp>_seed_<seed>+<experiment_name>'
    >>> derive_output_folder({}, {"output_folder": "x", "time_stamp": None}) is None
    True
    """
    from experiment.inputs import _tag

    if "output_folder" in given or "output_folder" not in defaults:
        return None
    needs_folder = _tag(defaults.get("output_folder")) == "!PLACEHOLDER"
    stamp = given.get("time_stamp")
    stamped = stamp is not None and "time_stamp" in defaults and bool(str(stamp).strip())
    if needs_folder and given.get("output_base") is None:
        if stamped:
            raise SystemExit("--time_stamp names a folder under --output_base: give --output_base "
                             "(or --output_folder).")
        return None
    if stamped:
        if str(stamp).strip() == STAMP_NOW:
            if os.environ.get("WORLD_SIZE", "1") != "1":
                raise SystemExit("--time_stamp=now under torchrun: every rank must name the same folder; "
                                 "give the stamp itself, e.g. --time_stamp=" + _now())
            given["time_stamp"] = _now()
        if not re.fullmatch(r"[\w.+\-]+", str(given["time_stamp"])):
            raise SystemExit(f"--time_stamp={given['time_stamp']}: a folder-name suffix of letters, digits, "
                             "'.', '+', '-' and '_' (e.g. 2024-05-01+13-45-10, or now)")
        return "!ref <output_base>/<time_stamp>_seed_<seed>+<experiment_name>"
    if needs_folder:
        return "!ref <output_base>/<experiment_name>"
    return None


def _now():
    return datetime.datetime.now().strftime("%Y-%m-%d+%H-%M-%S")
