#!/usr/bin/env python3
"""Text↔audio retrieval with a CLAP model on Clotho v2 (evaluation split) or AudioCaps (test split).

Every caption of the split is a text→audio query over the split's clips, and
every clip an audio→text query over its captions; R@1/5/10, mAP@10 and the
median and mean rank of each direction are defined in
:mod:`evaluation.retrieval` (ties are broken pessimistically). The model
is loaded as by ``recipes/microsoft_zeroshot.py``: the MS CLAP file
(``--clap_ckpt_path``), a checkpoint of one of our runs
(``--ssl_checkpoints_dir``, its ``save`` folder; ``--ssl_select``), or the
checkpoint on top of the file. Clips listed in the CSV but absent on disk (normal
for AudioCaps) are skipped and counted, as are unreadable ones.

Results go to the experiment folder ``<output_base>/<experiment_name>``:
``retrieval_results.json`` (metrics, chance levels, counts, options),
``text_to_audio.csv`` (per caption: its clip's rank and the top clip) and
``audio_to_text.csv`` (per clip: its captions' ranks and AP@10); the audio
embeddings are cached in ``embeddings/`` (with the same model and options, a
clip is reused while its file keeps its size and modification time, and
embedded again otherwise). A table is printed at the end.

To run this recipe ($DATASET is clotho or audiocaps):
    python recipes/retrieval_eval.py hparams/$DATASET/retrieval_eval.yaml \
        --data_folder=$DATA_FOLDER --clap_ckpt_path=$CLAP_CKPT_PATH \
        --ssl_checkpoints_dir=$SSL_CHECKPOINTS_DIR --output_base=$OUTPUT_BASE \
        --experiment_name=$EXPERIMENT_NAME
A toy teacher on the toy world's Clotho-layout corpus:
    python recipes/retrieval_eval.py hparams/toy/retrieval_eval.yaml \
        --data_folder=toy_world/clotho --ssl_checkpoints_dir=toy_results/toy_teacher/save \
        --output_base=toy_results --experiment_name=retrieval_clotho

Authors
 * clap-curation-recipes contributors
"""

import logging
import os
import sys

import numpy as np
import speechbrain as sb

from embeddings.encoders import encode_texts
from embeddings.extract import embed_audio_files
from embeddings.keys import model_fingerprint
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import load_audio_set, read_skipped
from evaluation.retrieval import (
    RESULTS_JSON, chance_levels, drop_clips, format_table, read_retrieval_set, retrieval_metrics, write_results,
)
from experiment.command_line import setup
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision
from experiment.safety import run_cli
from experiment.weights import load_eval_model

logger = logging.getLogger(__name__)

EMB_SUBFOLDER = "embeddings"


# -------------------------------------------------------------------- main
def main(argv=None):
    """Parses flags, reads the split, loads the model, embeds clips and captions, scores both directions."""
    hparams, run_opts, hparams_file, overrides = setup(argv, distributed=False)
    dataset, split = hparams["dataset"], hparams["split"]
    # Read the split first: a wrong --data_folder fails before any weights are loaded or files written.
    clips, captions, caption_clip, counts = read_retrieval_set(dataset, hparams["data_folder"], split)
    if not clips:
        raise SystemExit(
            f"None of the {counts['clips_listed']} clips of the {dataset} {split} split was found below "
            f"{os.path.abspath(hparams['data_folder'])}."
        )
    hold_folder_lock(hparams["output_folder"], "retrieval_eval.py")
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    folder = hparams["output_folder"]
    if counts["clips_missing"]:
        logger.warning("%d of the %d clips listed for %s %s are not on disk; they are skipped.",
                       counts["clips_missing"], counts["clips_listed"], dataset, split)

    model, device, model_source = load_eval_model(hparams, run_opts, weights="warn")
    precision = inference_precision(hparams, run_opts)
    progress = not run_opts.get("noprogressbar", False)
    emb_dir = os.path.join(folder, EMB_SUBFOLDER)
    embed_audio_files(model, clips, emb_dir, AudioEmbeddingOptions(
        sample_rate=hparams["sample_rate"], duration=hparams["eval_duration"],
        crop=hparams["eval_crop"], chunking=hparams["audio_chunking"], max_chunks=hparams["max_chunks"],
        batch_size=hparams["batch_size"], num_workers=hparams["num_workers"], dtype="float32", device=device,
        progress=progress, model_id=model_fingerprint(model), precision=precision,
    ))
    audio_emb, _, _ = load_audio_set(emb_dir)
    skipped = read_skipped(emb_dir)
    unreadable = [row["wav_path"] for row in skipped]
    # The embedding rows follow the clip list, minus the unreadable clips.
    clips, captions, caption_clip = drop_clips(clips, captions, caption_clip, {int(row["index"]) for row in skipped})
    if len(clips) != audio_emb.shape[0]:
        raise SystemExit(
            f"{emb_dir} holds {audio_emb.shape[0]} audio embeddings for {len(clips)} clips; delete it and rerun."
        )
    if not clips:
        raise SystemExit(f"None of the {len(unreadable)} clips found could be read (see {emb_dir}/audio_skipped.csv).")
    text_emb = encode_texts(
        model, hparams["tokenizer"], captions, batch_size=hparams["text_batch_size"],
        max_length=hparams["text_max_length"], device=device, progress=progress, desc="embedding captions",
        precision=precision,
    )
    audio_emb = np.asarray(audio_emb, dtype=np.float64)
    text_emb = np.asarray(text_emb, dtype=np.float64)
    audio_emb /= np.linalg.norm(audio_emb, axis=1, keepdims=True).clip(1e-12)
    text_emb /= np.linalg.norm(text_emb, axis=1, keepdims=True).clip(1e-12)
    sim = text_emb @ audio_emb.T
    metrics, t2a_ranks, a2t_ranks = retrieval_metrics(sim, caption_clip)
    chance = chance_levels(len(clips), caption_clip, len(captions))

    results = {
        "dataset": dataset,
        "split": split,
        "model_source": model_source,
        "data_folder": os.path.abspath(hparams["data_folder"]),
        "text_to_audio": metrics["text_to_audio"],
        "audio_to_text": metrics["audio_to_text"],
        "chance": chance,
        "clips_scored": len(clips),
        "captions_scored": len(captions),
        "clips_listed": counts["clips_listed"],
        "clips_missing": counts["clips_missing"],
        "captions_missing": counts["captions_missing"],
        "clips_unreadable": len(unreadable),
        "unreadable": unreadable[:20],
        "tie_rule": "pessimistic: among equal scores, irrelevant items rank first",
        "eval_duration": hparams["eval_duration"],
        "eval_crop": hparams["eval_crop"],
        "audio_chunking": hparams["audio_chunking"],
        "max_chunks": hparams["max_chunks"],
        "sample_rate": hparams["sample_rate"],
        "precision": precision,
    }
    write_results(folder, results, clips, captions, caption_clip, sim, t2a_ranks, a2t_ranks)
    print(
        f"Retrieval {dataset} {split}: {len(clips)} clips, {len(captions)} captions "
        f"({counts['clips_missing']} listed clips missing, {len(unreadable)} unreadable)"
        + (" - skipped clips are left out of both directions" if counts["clips_missing"] or unreadable else ""),
        flush=True,
    )
    print(format_table(metrics, chance), flush=True)
    print(f"Results: {os.path.abspath(os.path.join(folder, RESULTS_JSON))}", flush=True)
    return results


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
