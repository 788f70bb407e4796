#!/usr/bin/env python3
"""Curation, DU and ADS: pairs every embedded clip with every caption whose cosine passes a threshold.

DU (``hparams/curation/audioset_insper_duv2_retr.yaml``) joins the clips
with the teacher's training captions (``text_emb.npy`` of the embedding
step); ADS (``hparams/curation/{esc,us8k,tut}_insper_audioset_dudsv3_retr.yaml``)
joins them with the DS captions of a target set (``ds_<set>_emb.npy``, written
by ``retrieve_ds_t2t.py`` into the same ``emb_dir``). The join is exact and
blocked (:mod:`curation.join`); the output is the ``--curation_csv`` of
student training, ``ID,wav_path,caption,similarity``, plus a summary JSON.
The paper code's embedding files are read too (``--aud_emb_path`` with
``--aud_ds_path``, ``--txt_emb_path`` with ``--txt_ds_path``, or its default
file names in ``--emb_dir``; :mod:`curation.paper_files`).
With ``caption_rows: per_row`` (the paper YAMLs' default, as the paper code)
a caption carried by k rows of the caption CSV gives each matching clip k
rows; ``distinct`` gives one.

To run this recipe:
    python recipes/retrieve_from_emb_thresh.py hparams/curation/audioset_insper_duv2_retr.yaml \
        --emb_dir=$EMB_DIR --audio_bs=$AUDIO_BS --sim_threshold=$SIM_THRESHOLD
    python recipes/retrieve_from_emb_thresh.py hparams/curation/esc_insper_audioset_dudsv3_retr.yaml \
        --emb_dir=$EMB_DIR --aud_ds_path=$AUD_DS_PATH --sim_threshold=$SIM_THRESHOLD

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import os
import sys

import numpy as np
import torch
import speechbrain as sb

from curation.builders import (
    best_match_profile, caption_ids_in, caption_repeats, eval_freesound_ids, format_summary, write_curated_pairs,
    write_summary,
)
from curation.join import resolve_join_precision
from curation.paper_files import load_paper_audio_set, load_paper_caption_set, paper_embedding_files
from embeddings.lists import read_path_list
from embeddings.store import load_audio_set, load_caption_set, read_skipped
from experiment.command_line import setup
from experiment.lock import hold_folder_lock
from experiment.runtime import select_device
from experiment.safety import run_cli

logger = logging.getLogger(__name__)


def select_clips(aud_ds_path, emb_dir, audio_paths):
    """Rows of the audio embeddings to use: those of the clips listed in ``aud_ds_path`` (None: all).

    Clips the embedding step could not read are left out (with a count);
    a listed clip that was never embedded is an error.
    """
    if not aud_ds_path:
        return None
    wanted = read_path_list(aud_ds_path)
    row_of = {p: i for i, p in enumerate(audio_paths)}
    skipped = {r["wav_path"] for r in read_skipped(emb_dir)}
    rows, unreadable, missing = set(), 0, []
    for path in wanted:
        if path in row_of:
            rows.add(row_of[path])
        elif path in skipped:
            unreadable += 1
        else:
            missing.append(path)
    if missing:
        raise SystemExit(
            f"{len(missing)} clip(s) of --aud_ds_path={aud_ds_path} have no embedding in {emb_dir}, e.g. {missing[0]}. "
            "Embed that list with recipes/microsoft_curation_toemb.py (--audio_pathfile) first."
        )
    if unreadable:
        logger.warning("%d clip(s) of %s were unreadable at embedding time (audio_skipped.csv); left out.",
                       unreadable, aud_ds_path)
    if len(rows) == len(audio_paths):
        return None
    return np.array(sorted(rows), dtype=np.int64)


def main(argv=None):
    """Loads the embeddings, checks they come from one teacher, joins and writes the curation CSV."""
    hparams, run_opts, hparams_file, overrides = setup(argv, distributed=False)
    hold_folder_lock(hparams["log_folder"], "retrieve_from_emb_thresh.py")
    sb.create_experiment_directory(
        experiment_directory=hparams["log_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    emb_dir = hparams["emb_dir"]
    # Ours (emb_dir's audio_emb.npy, <caption_set>_emb.npy) or the paper code's .npy files (named, or found in
    # emb_dir under its default names): rows labelled by the lines of aud_ds_path / the rows of txt_ds_path.
    paper_audio, paper_captions = paper_embedding_files(
        emb_dir, hparams["caption_set"], hparams.get("aud_emb_path"), hparams.get("aud_ds_path"),
        hparams.get("txt_emb_path"), hparams.get("txt_ds_path"),
    )
    if paper_audio:
        audio_emb, audio_paths, audio_info = load_paper_audio_set(*paper_audio)
    else:
        audio_emb, audio_paths, audio_info = load_audio_set(emb_dir)
    if paper_captions:
        caption_emb, table, caption_info = load_paper_caption_set(*paper_captions)
    else:
        caption_emb, table, caption_info = load_caption_set(emb_dir, hparams["caption_set"])
    if paper_audio or paper_captions:
        logger.warning("The paper code's embedding files record no model: make sure the clips and the captions "
                       "were embedded by the same teacher.")
    if audio_emb.shape[1] != caption_emb.shape[1]:
        raise SystemExit(
            f"Audio embeddings have {audio_emb.shape[1]} dimensions, captions {caption_emb.shape[1]}: not one model."
        )
    if audio_info.get("model") and caption_info.get("model") and audio_info["model"] != caption_info["model"]:
        raise SystemExit(
            f"{emb_dir}: the audio embeddings and the '{hparams['caption_set']}' captions were made by different "
            f"models ({audio_info['model']} vs {caption_info['model']}); embed both with the same teacher checkpoint."
        )
    # With the paper's audio file, aud_ds_path is its row list (every clip); with ours, a selection.
    query_rows = None if paper_audio else select_clips(hparams.get("aud_ds_path"), emb_dir, audio_paths)
    try:
        repeats = caption_repeats(table, hparams["caption_rows"])
    except ValueError as err:
        raise SystemExit(f"--caption_rows={hparams['caption_rows']}: {err}") from err

    caption_in_eval, eval_source = None, None
    if hparams.get("eval_meta_path"):
        ids, eval_source = eval_freesound_ids(hparams["eval_meta_path"])
        if ids:
            caption_in_eval = caption_ids_in(table, ids)
    elif hparams["drop_eval_overlap"]:
        raise SystemExit("--drop_eval_overlap=True needs --eval_meta_path "
                         "(meta/esc50.csv, metadata/UrbanSound8K.csv or their folder).")

    out_csv = hparams["curation_csv"]
    title = hparams["curation_name"].upper()
    n_clips = len(audio_paths) if query_rows is None else len(query_rows)
    device = select_device(run_opts)
    precision = resolve_join_precision(hparams["join_precision"], torch.device(device).type)
    print(f"{title}: {n_clips} clips x {len(table)} captions, threshold {hparams['sim_threshold']} "
          f"(block products in {precision} on {device})", flush=True)
    summary = write_curated_pairs(
        out_csv, audio_emb, caption_emb, audio_paths, table, hparams["sim_threshold"],
        audio_bs=hparams["audio_bs"], text_bs=hparams["text_bs"], top_k=hparams["top_k"], query_rows=query_rows,
        caption_in_eval=caption_in_eval, drop_eval_overlap=hparams["drop_eval_overlap"],
        progress=not run_opts.get("noprogressbar", False), desc=hparams["curation_name"], precision=precision,
        device=device, repeats=repeats,
    )
    summary.update(join_precision=precision, caption_rows=hparams["caption_rows"])
    summary.update(
        curation=hparams["curation_name"], emb_dir=os.path.abspath(emb_dir), caption_set=hparams["caption_set"],
        clips_considered=n_clips, top_k=hparams["top_k"], eval_ids_from=eval_source,
        curation_csv=os.path.abspath(out_csv),
    )
    # Where the threshold sits in the data: the best caption of a sample of clips.
    sample_rows = np.arange(len(audio_paths)) if query_rows is None else query_rows
    summary["best_match_profile"] = best_match_profile(
        audio_emb[np.sort(sample_rows[:: max(1, len(sample_rows) // 256)])], caption_emb
    )
    if "threshold" in caption_info:
        summary["ds_threshold"] = caption_info["threshold"]
    summary_path = os.path.splitext(out_csv)[0] + "_summary.json"
    write_summary(summary_path, summary)
    logger.info("%s", format_summary(title, summary))
    print(f"Curation CSV: {os.path.abspath(out_csv)} (summary: {os.path.abspath(summary_path)})", flush=True)
    if summary["pairs"] == 0:
        logger.warning("No pair reaches the threshold %s; lower --sim_threshold (the summary shows the kept range).",
                       hparams["sim_threshold"])
    return summary


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
