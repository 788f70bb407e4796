#!/usr/bin/env python3
"""Curation step 1: embeds unpaired audio and the teacher's training captions with the teacher.

Every clip of ``--audio_pathfile`` (one path per line, e.g. downloaded
AudioSet) and every distinct caption of ``--text_pathfile`` (a caption CSV
such as the teacher's ``save/train_raw.csv``) goes through the teacher; the
L2-normalised embeddings land in ``<output_folder>/save`` (the ``emb_dir`` of
``retrieve_from_emb_thresh.py`` and ``retrieve_ds_t2t.py``) with the ordered
path list and caption table they belong to (see :mod:`curation.embed`).
Killed midway, the same command resumes from the shards already written and
ends with the same bytes as an uninterrupted run.

To run this recipe:
    python recipes/microsoft_curation_toemb.py hparams/curation/microsoft_audioset_insper_toemb.yaml \
        --output_folder=$OUTPUT_DIR --clap_ckpt_path=$CLAP_CKPT_PATH \
        --ssl_checkpoints_dir=$SSL_CHECKPOINTS_DIR \
        --audio_pathfile=$AUDIO_PATHFILE --text_pathfile=$TEXT_PATHFILE
Several GPUs (the list is sharded across ranks, rank 0 merges):
    torchrun --nproc_per_node=4 recipes/microsoft_curation_toemb.py hparams/curation/microsoft_audioset_insper_toemb.yaml [flags]

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import os
import sys

import torch
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from curation.embed import caption_table, embed_audio_files, embed_captions, model_fingerprint, read_path_list
from dataset.manifest import read_caption_csv
from recipes import common

logger = logging.getLogger(__name__)


def rank_and_world():
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def select_device(run_opts):
    """``--device`` (default cpu); under torchrun each rank takes the GPU of its LOCAL_RANK."""
    device = run_opts.get("device") or "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    if device.startswith("cuda") and local_rank is not None:
        device = f"cuda:{int(local_rank)}"
    return device


def build_teacher(hparams, run_opts):
    """The YAML's model with the teacher's weights, in eval mode on its device.

    Returns
    -------
    (model, device, fingerprint)
        ``fingerprint`` (:func:`curation.embed.model_fingerprint`) is recorded
        with the embeddings so that later steps can check they use one model.
    """
    if not (hparams.get("clap_ckpt_path") or hparams.get("ssl_checkpoints_dir")):
        raise SystemExit(
            "Curation needs the teacher's weights: give --ssl_checkpoints_dir=<teacher>/save "
            "or --clap_ckpt_path=<CLAP_weights_2022.pth>."
        )
    model = hparams["model"]
    common.initialise_model(model, hparams)
    fingerprint = model_fingerprint(model)
    device = select_device(run_opts)
    return model.to(device).eval(), device, fingerprint


def main(argv=None):
    """Parses flags, builds the teacher, embeds the audio list then the captions."""
    hparams_file, run_opts, overrides = common.parse_arguments(argv)
    run_opts = common.cpu_fallbacks(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams = common.load_hparams(hparams_file, overrides)
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
    model, device, fingerprint = build_teacher(hparams, run_opts)
    progress = not run_opts.get("noprogressbar", False)
    if if_main_process():
        print(f"Embedding {len(paths)} clips" + (f" and {len(table)} distinct captions" if table else "") + f" into {emb_dir}", flush=True)

    audio = embed_audio_files(
        model, paths, emb_dir,
        sample_rate=hparams["sample_rate"], duration=hparams["eval_duration"], crop=hparams["eval_crop"],
        chunking=hparams["audio_chunking"], max_chunks=hparams["max_chunks"],
        batch_size=hparams["batch_size"], shard_size=hparams["shard_size"], num_workers=hparams["num_workers"],
        dtype=hparams["emb_dtype"], device=device, rank=rank, world_size=world_size, progress=progress,
        model_id=fingerprint,
    )
    text = None
    if table is not None:
        text = embed_captions(
            model, hparams["tokenizer"], table, emb_dir, max_length=hparams["text_max_length"],
            batch_size=hparams["text_batch_size"], shard_size=16 * hparams["text_batch_size"],
            dtype=hparams["emb_dtype"], device=device, rank=rank, world_size=world_size, progress=progress,
            model_id=fingerprint,
        )
    if if_main_process():
        print(
            f"Done: {audio['rows']} clip embeddings ({audio['skipped']} unreadable clips skipped)"
            + (f", {text['rows']} caption embeddings" if text else "")
            + f" in {os.path.abspath(emb_dir)}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
