#!/usr/bin/env python3
"""Curation step 1: embeds unpaired audio and the teacher's training captions with the teacher.

Every clip of ``--audio_pathfile`` (one path per line, e.g. downloaded
AudioSet) and every distinct caption of ``--text_pathfile`` (a caption CSV
such as the teacher's ``save/train_raw.csv``) goes through the teacher; the
L2-normalised embeddings land in ``<output_folder>/save`` (the ``emb_dir`` of
``retrieve_from_emb_thresh.py`` and ``retrieve_ds_t2t.py``) with the ordered
path list and caption table they belong to (see :mod:`embeddings.store`).
Killed midway, the same command resumes from the shards already written and
ends with the same bytes as an uninterrupted run. Run again after the audio
changed, it embeds only the clips whose file is new or has another size or
modification time, drops those no longer listed and keeps the rest.

To run this recipe:
    python recipes/microsoft_curation_toemb.py hparams/curation/microsoft_audioset_insper_toemb.yaml \
        --output_folder=$OUTPUT_DIR --clap_ckpt_path=$CLAP_CKPT_PATH \
        --ssl_checkpoints_dir=$SSL_CHECKPOINTS_DIR \
        --audio_pathfile=$AUDIO_PATHFILE --text_pathfile=$TEXT_PATHFILE
Several GPUs (the list is sharded across ranks, rank 0 merges):
    torchrun --nproc_per_node=4 recipes/microsoft_curation_toemb.py \
        hparams/curation/microsoft_audioset_insper_toemb.yaml [flags]

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from curation.paper_outputs import export_embedding_step
from dataset.manifest import read_caption_csv
from embeddings.extract import embed_audio_files, embed_captions
from embeddings.keys import model_fingerprint
from evaluation.protocols import checkpoint_protocol, get_protocol
from embeddings.lists import caption_table, read_path_list
from embeddings.options import AudioEmbeddingOptions, CaptionEmbeddingOptions
from experiment.command_line import setup
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision, rank_and_world
from experiment.safety import run_cli
from experiment.weights import load_eval_model

logger = logging.getLogger(__name__)


def main(argv=None):
    """Parses flags, builds the teacher, embeds the audio list then the captions."""
    hparams, run_opts, hparams_file, overrides = setup(argv)
    hold_folder_lock(hparams["output_folder"], "microsoft_curation_toemb.py")
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    rank, world_size = rank_and_world()
    emb_dir = hparams["save_folder"]
    os.makedirs(emb_dir, exist_ok=True)

    paths = read_path_list(hparams["audio_pathfile"])
    table = None
    if hparams.get("text_pathfile"):
        table = caption_table(read_caption_csv(hparams["text_pathfile"]))
    model, device, source = load_eval_model(hparams, run_opts, purpose="Curation")
    # Recorded with the embeddings, so that later steps can check they use one model.
    # null: the checkpoint's own (our runs and MS CLAP 2022: paper; a LAION file: laion; ...)
    protocol = get_protocol(hparams.get("protocol") or checkpoint_protocol(source)).name
    fingerprint = model_fingerprint(model, protocol)
    precision = inference_precision(hparams, run_opts)
    progress = not run_opts.get("noprogressbar", False)
    if if_main_process():
        print(f"Embedding {len(paths)} clips" + (f" and {len(table)} distinct captions" if table else "")
              + f" into {emb_dir} ({precision})", flush=True)

    audio = embed_audio_files(model, paths, emb_dir, AudioEmbeddingOptions(
        sample_rate=hparams["sample_rate"], duration=hparams["eval_duration"], crop=hparams["eval_crop"],
        chunking=hparams["audio_chunking"], max_chunks=hparams["max_chunks"],
        batch_size=hparams["batch_size"], shard_size=hparams["shard_size"], num_workers=hparams["num_workers"],
        dtype=hparams["emb_dtype"], device=device, rank=rank, world_size=world_size, progress=progress,
        model_id=fingerprint, precision=precision, protocol=protocol,
    ))
    text = None
    if table is not None:
        text = embed_captions(model, hparams["tokenizer"], table, emb_dir, CaptionEmbeddingOptions(
            max_length=hparams["text_max_length"],
            batch_size=hparams["text_batch_size"], shard_size=16 * hparams["text_batch_size"],
            dtype=hparams["emb_dtype"], device=device, rank=rank, world_size=world_size, progress=progress,
            model_id=fingerprint, precision=precision,
        ))
    if if_main_process():
        export_embedding_step(hparams, emb_dir, model, device, precision)  # --aud_svpth / --txt_svpth (paper's files)
        print(
            f"Done: {audio['rows']} clip embeddings ({audio['skipped']} unreadable clips skipped)"
            + (f", {text['rows']} caption embeddings" if text else "")
            + f" in {os.path.abspath(emb_dir)}",
            flush=True,
        )


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
