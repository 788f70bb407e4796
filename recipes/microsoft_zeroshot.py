#!/usr/bin/env python3
"""Zero-shot classification with a CLAP model on ESC-50, UrbanSound8K, TUT Acoustic Scenes 2017, VGGSound or TAU
Urban Acoustic Scenes 2019.

Each clip gets the class whose prompt ("this is a sound of <label>" by
default) has the highest cosine with the clip's audio embedding. The model is
the MS CLAP 2022 file (``--clap_ckpt_path``), a checkpoint of one of our
training runs or of the paper code's (``--ssl_checkpoints_dir``, its ``save``
folder; the paper's YAMLs take the highest zero-shot accuracy as its code does,
``use_maxacc_ep``; ``--ssl_select`` chooses the best by loss or by accuracy, or
the latest), or the checkpoint on top of the file when both are given. Results go to the
experiment folder: ``zeroshot_results.json``, ``confusion_matrix.csv``,
``confusion_matrix.png``, ``predictions.csv``; a one-line summary is printed.

``--protocol`` chooses how clips are read and fitted to the model and which
prompt is used (:mod:`evaluation.protocols`, docs/zeroshot.md): ``paper``
(the YAMLs' default: ``eval_duration`` windows, ``eval_crop``), ``laion``
(LAION-CLAP's ``get_audio_embedding_from_filelist`` and "This is a sound of
{label}.") or ``msclap`` (msclap's ``CLAPWrapper`` and "this is the sound of
{label}", MS CLAP 2022's "this is a sound of {label}" for a model without
GPT-2 pooling); ``prompt_templates`` other than the paper's default are kept.
``--protocol=`` (null) takes the checkpoint's own: ``laion`` for a LAION file,
``msclap`` for MS CLAP 2023, ``paper`` for our runs and MS CLAP 2022.

To run this recipe ($DATASET is one of esc, us8k, tut (or tut17), vggsound, tau19):
    python recipes/microsoft_zeroshot.py hparams/$DATASET/microsoft_zeroshot.yaml \
        --data_folder=$DATA_FOLDER --clap_ckpt_path=$CLAP_CKPT_PATH \
        --ssl_checkpoints_dir=$SSL_CHECKPOINTS_DIR --output_base=$OUTPUT_BASE \
        --experiment_name=$EXPERIMENT_NAME
A toy teacher on the toy world:
    python recipes/microsoft_zeroshot.py hparams/toy/microsoft_zeroshot.yaml \
        --data_folder=toy_world/ESC-50 --ssl_checkpoints_dir=toy_results/toy_teacher/save \
        --output_base=toy_results --experiment_name=zeroshot_esc50

Authors
 * clap-curation-recipes contributors (after Wang et al., arXiv 2305.01864)
"""

import dataclasses
import logging
import os
import sys

import torch
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from dataset.labels import labels_in_file_order
from dataset.pipelines import labelled_dataset
from dataset.manifest import read_csv
from dataset.prepare_zeroshot import canonical_dataset, prepare_zeroshot, read_prepared
from evaluation.protocols import checkpoint_protocol, get_protocol, manifest_embeddings, protocol_templates
from evaluation.zeroshot import ZeroShotEvaluator, as_templates, summary_line, unwrap
from experiment.command_line import setup
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision
from experiment.weights import load_model
from experiment.safety import run_cli
from training.curves import make_train_logger

logger = logging.getLogger(__name__)


class ZeroShotBrain(sb.Brain):
    """Evaluation only: embeds the clips, ranks the class prompts, writes the results.

    Expects ``hparams.evaluator`` (a :class:`evaluation.zeroshot.ZeroShotEvaluator`),
    ``hparams.tokenizer``, ``hparams.output_folder`` and ``hparams.train_logger``;
    ``hparams.results_info`` (dict) is added to the results file.
    """

    def compute_forward(self, batch, stage):
        """Unit-norm audio embeddings of the batch ``[B, d_proj]``."""
        batch = batch.to(self.device)
        return unwrap(self.modules.model).encode_audio(batch.sig.data)

    def compute_objectives(self, predictions, batch, stage):
        """Ranks the classes of each readable clip; there is no loss (returns 0)."""
        self.hparams.evaluator.add_batch(
            predictions, batch.id, batch.wav_path, batch.class_name, batch.fold, ok=batch.audio_ok
        )
        return torch.zeros((), device=self.device)

    def evaluate_protocol(self, csv_path, protocol):
        """Scores the manifest's clips read and fitted as the ``laion`` or ``msclap`` protocol does."""
        model = unwrap(self.modules.model)
        model.eval()
        self.on_stage_start(sb.Stage.TEST)
        rows = read_csv(csv_path)
        hp = self.hparams
        for emb, batch, ok in manifest_embeddings(model, rows, protocol, hp.sample_rate, hp.eval_duration,
                                                  self.device, hp.batch_size, hp.num_workers, self.eval_precision):
            hp.evaluator.add_batch(emb, [r["ID"] for r in batch], [r["wav_path"] for r in batch],
                                   [r["class_name"] for r in batch], [r["fold"] for r in batch], ok=ok)
        self.on_stage_end(sb.Stage.TEST, None)

    def on_stage_start(self, stage, epoch=None):
        """Computes the prompt embeddings once for the whole pass."""
        evaluator = self.hparams.evaluator
        evaluator.reset()
        evaluator.encode_prompts(self.modules.model, self.hparams.tokenizer, self.device, precision=self.eval_precision)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Writes the result files, logs the accuracies and prints the one-line summary."""
        if not if_main_process():
            return
        folder = self.hparams.output_folder
        results = self.hparams.evaluator.write(folder, **getattr(self.hparams, "results_info", {}))
        stats = {"top1": results["top1"], "top5": results["top5"], "clips_scored": results["clips_scored"],
                 "clips_skipped": results["clips_skipped"]}
        self.hparams.train_logger.log_stats(
            stats_meta={"dataset": results.get("dataset"), "model": results.get("model_source")},
            test_stats={k: v for k, v in stats.items() if v is not None},
        )
        if results["clips_skipped"]:
            logger.warning("%d clip(s) could not be read and were skipped: %s", results["clips_skipped"],
                           ", ".join(results["skipped_ids"][:5]))
        self.results = results
        print(summary_line(results, os.path.abspath(folder)), flush=True)


def dataio_prep(hparams):
    """The dataset of the prepared manifest (deterministic crop), its class list and the preparation counts.

    The class list is the dataset's, in its order, or that of ``--label_encoder_path`` (the paper code's
    ``label_encoder_*.txt``) when given.
    """
    csv_path, labels, stats = read_prepared(hparams["output_folder"], hparams["dataset"])
    labels = labels_in_file_order(labels, hparams.get("label_encoder_path"), "label_encoder_path")
    dataset = labelled_dataset(csv_path, hparams["sample_rate"], hparams["eval_duration"], hparams["eval_crop"])
    return dataset, labels, stats


def main(argv=None):
    """Parses flags, prepares the set, loads the model and scores every clip."""
    hparams, run_opts, hparams_file, overrides = setup(argv)
    hparams["dataset"] = canonical_dataset(hparams["dataset"])
    # Fails now, with the template or protocol at fault, rather than after loading the model.
    templates = as_templates(hparams["prompt_templates"])
    protocol = get_protocol(hparams["protocol"]).name if hparams.get("protocol") else None

    hold_folder_lock(hparams["output_folder"], "microsoft_zeroshot.py")
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    hparams["train_logger"] = make_train_logger(hparams, curves=False)  # + W&B / TensorBoard on request
    run_on_main(
        prepare_zeroshot,
        kwargs={
            "dataset": hparams["dataset"],
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "folds": hparams["folds"],
            "check_audio": hparams["check_audio"],
        },
    )
    test_set, labels, prep_stats = dataio_prep(hparams)
    _, model_source = load_model(hparams, weights="warn")
    protocol = protocol or checkpoint_protocol(model_source)  # null: the checkpoint's own
    templates = protocol_templates(templates, protocol, hparams.get("text_pooling"))
    evaluator = ZeroShotEvaluator(labels, templates, max_length=hparams["text_max_length"])
    # The towers' precision: SpeechBrain autocasts compute_forward to eval_precision; the prompts follow.
    precision = inference_precision(hparams, run_opts)
    run_opts = dataclasses.replace(run_opts, eval_precision=precision)
    hparams["precision"] = precision
    hparams["evaluator"] = evaluator
    hparams["results_info"] = {
        "dataset": hparams["dataset"],
        "model_source": model_source,
        "data_folder": os.path.abspath(hparams["data_folder"]),
        "folds": list(prep_stats.get("per_fold", {})),
        "eval_duration": hparams["eval_duration"],
        "eval_crop": hparams["eval_crop"],
        "protocol": protocol,
        "sample_rate": hparams["sample_rate"],
        "precision": precision,
        "preparation": {k: prep_stats.get(k)
                        for k in ("listed", "selected", "excluded", "kept", "missing", "unreadable")},
    }

    brain = ZeroShotBrain(modules=hparams["modules"], hparams=hparams, run_opts=run_opts)
    if protocol == "paper":
        brain.evaluate(test_set, test_loader_kwargs=hparams["test_dataloader_opts"])
    else:
        brain.evaluate_protocol(read_prepared(hparams["output_folder"], hparams["dataset"])[0], protocol)
    return brain


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
