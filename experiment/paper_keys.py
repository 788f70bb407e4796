"""The paper code's YAML keys on our command lines: what each one means in ours (a table, no logic).

The YAMLs of the paper's code (zhepeiw/clap_curation, ``hparams/**``) name
some hyperparameters differently from ours, and hold many keys that are
objects or are never read. Every top-level key of its YAMLs for the commands
of its README (listed in ``tests/fixtures/paper_code_yaml_keys.json``) is
accepted as a ``--key=value`` override, in one of four ways:

- a key our YAML has (``seed``, ``batch_size``, ..., and the paper code's keys
  that are real keys of ours: ``time_stamp``, ``overfit_size``,
  ``global_contrastive``, ``num_ckpt_keep``, ``num_epoch_save``,
  ``use_wandb``, ``aud_svpth``, ``txt_svpth``, ``output_emb_path``): nothing
  to translate; ``auto_mix_prec`` is SpeechBrain's run option
  (``--auto_mix_prec=False`` is accepted as a switch);
- :class:`Alias`: renamed (and its value converted) to our key with the same
  meaning, e.g. ``--freeze_txt_emb=True`` is ``--freeze_text_base=True``;
- :class:`Ignored`: accepted with a warning that says why it has no effect
  (never read by the paper's scripts, an object the YAML builds, ...) and
  what replaces it;
- :class:`Elsewhere`: a real key added by another part of the project (its
  absence from a YAML is an error naming what provides it).

:mod:`experiment.command_line` applies :data:`PAPER_KEYS` to the overrides of
a run before they are checked, so the checks, the saved ``hyperparams.yaml``
and the run see our keys only; it also turns the paper code's ``time_stamp``
into the output folder.
"""

import dataclasses
from typing import Callable, Optional

__all__ = ["Alias", "Ignored", "Elsewhere", "PAPER_KEYS", "STAMP_NOW", "prompt_template"]

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
        What differs, if anything (for the table of docs/paper_vs_ours.md).
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
