#!/usr/bin/env python3
"""Text↔audio retrieval with a CLAP model on Clotho v2 (evaluation split) or AudioCaps (test split).

Every caption of the split is a text→audio query over the split's clips, and
every clip an audio→text query over its captions; R@1/5/10, mAP@10 and the
median and mean rank of each direction are defined in
:mod:`recipes.retrieval_metrics` (ties are broken pessimistically). The model
is loaded as by ``recipes/microsoft_zeroshot.py``: the MS CLAP file
(``--clap_ckpt_path``), a checkpoint of one of our runs
(``--ssl_checkpoints_dir``, its ``save`` folder; ``--ssl_select``), or the
checkpoint on top of the file. Clips listed in the CSV but absent on disk (normal
for AudioCaps) are skipped and counted, as are unreadable ones.

Results go to the experiment folder ``<output_base>/<experiment_name>``:
``retrieval_results.json`` (metrics, chance levels, counts, options),
``text_to_audio.csv`` (per caption: its clip's rank and the top clip) and
``audio_to_text.csv`` (per clip: its captions' ranks and AP@10); the audio
embeddings are cached in ``embeddings/`` (reused when the model, clips and
options are the same). A table is printed at the end.

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

import json
import logging
import os
import sys

import numpy as np
import speechbrain as sb

from curation.embed import embed_audio_files, encode_texts, load_audio_set, model_fingerprint, read_skipped
from dataset.manifest import atomic_write, write_csv
from dataset.prepare_insper import find_metadata, read_csv_any_encoding, read_audiocaps, read_clotho
from recipes import common
from recipes.microsoft_curation_toemb import select_device
from recipes.microsoft_zeroshot import load_model
from recipes.retrieval_metrics import RECALL_KS, average_precision_at_k, chance_recall, format_table, retrieval_metrics

logger = logging.getLogger(__name__)

RESULTS_JSON = "retrieval_results.json"
T2A_CSV = "text_to_audio.csv"
A2T_CSV = "audio_to_text.csv"
EMB_SUBFOLDER = "embeddings"

# dataset -> (reader, caption CSV of a split, columns that identify a clip in it)
DATASETS = {
    "clotho": (read_clotho, "clotho_captions_{split}.csv", ("file_name",)),
    "audiocaps": (read_audiocaps, "{split}.csv", ("youtube_id", "start_time")),
}


# -------------------------------------------------------------------- data
def _listed_clips(folder, dataset, split):
    """Number of distinct clips the split's caption CSV lists (0 if the CSV is not found)."""
    _, pattern, key = DATASETS[dataset]
    path = find_metadata(folder, pattern.format(split=split))
    if path is None:
        return 0
    return len({tuple((row.get(k) or "").strip() for k in key) for row in read_csv_any_encoding(path)})


def read_retrieval_set(dataset, data_folder, split):
    """The clips on disk of one split and their captions.

    Arguments
    ---------
    dataset : str
        ``clotho`` or ``audiocaps``.
    data_folder : str
        The corpus root (see ``docs/formats.md``); the caption CSV may also
        sit one folder down, the audio anywhere below.
    split : str
        ``evaluation`` (Clotho) or ``test`` (AudioCaps), or another split.

    Returns
    -------
    clips : list of str
        Audio paths, in order of first appearance in the CSV.
    captions : list of str
    caption_clip : list of int
        Index into ``clips`` of each caption.
    counts : dict
        ``clips_listed``, ``clips_missing``, ``captions_missing``.
    """
    if dataset not in DATASETS:
        raise SystemExit(f"dataset must be one of {sorted(DATASETS)}, not {dataset!r}.")
    reader, pattern, _ = DATASETS[dataset]
    if not os.path.isdir(data_folder):
        raise SystemExit(f"--data_folder={data_folder} is not a folder; it must hold {pattern.format(split=split)}.")
    try:
        rows, captions_missing = reader(data_folder, splits=(split,))
    except FileNotFoundError as err:
        raise SystemExit(
            f"{err}\n--data_folder must be the {dataset} root holding {pattern.format(split=split)} "
            "(directly or one folder down) and the audio below it."
        ) from err
    clip_index, clips, captions, caption_clip = {}, [], [], []
    for row in rows:
        index = clip_index.setdefault(row["wav_path"], len(clips))
        if index == len(clips):
            clips.append(row["wav_path"])
        captions.append(row["caption"])
        caption_clip.append(index)
    listed = _listed_clips(data_folder, dataset, split)
    counts = {"clips_listed": listed, "clips_missing": max(0, listed - len(clips)), "captions_missing": captions_missing}
    return clips, captions, caption_clip, counts


def drop_clips(clips, captions, caption_clip, dropped):
    """Drops the clips whose indices are in ``dropped`` and their captions; re-indexes the rest.

    Example
    -------
    >>> drop_clips(["a", "b", "c"], ["x", "y", "z", "w"], [0, 1, 2, 2], {1})
    (['a', 'c'], ['x', 'z', 'w'], [0, 1, 1])
    """
    new_index = {}
    for i in range(len(clips)):
        if i not in dropped:
            new_index[i] = len(new_index)
    kept = [(text, new_index[c]) for text, c in zip(captions, caption_clip) if c in new_index]
    return [clips[i] for i in new_index], [t for t, _ in kept], [c for _, c in kept]


# ------------------------------------------------------------------ output
def chance_levels(n_clips, caption_clip, n_captions):
    """Expected R@k of random rankings, per direction (audio→text averaged over the clips' caption counts)."""
    per_clip = np.bincount(caption_clip, minlength=n_clips)
    return {
        "text_to_audio": {f"R@{k}": chance_recall(n_clips, 1, k) for k in RECALL_KS},
        "audio_to_text": {f"R@{k}": float(np.mean([chance_recall(n_captions, int(n), k) for n in per_clip])) for k in RECALL_KS},
    }


def write_results(folder, results, clips, captions, caption_clip, sim, t2a_ranks, a2t_ranks):
    """Writes ``retrieval_results.json`` and the two per-query CSVs (each atomically)."""
    clip_ids = [os.path.basename(p) for p in clips]
    top_clip = np.argmax(sim, axis=1)
    write_csv(
        os.path.join(folder, T2A_CSV),
        [{"caption_index": i, "caption": text, "clip": clip_ids[c], "rank": int(t2a_ranks[i]),
          "top_clip": clip_ids[int(top_clip[i])]}
         for i, (text, c) in enumerate(zip(captions, caption_clip))],
        fieldnames=["caption_index", "caption", "clip", "rank", "top_clip"],
    )
    write_csv(
        os.path.join(folder, A2T_CSV),
        [{"clip": clip_ids[j], "wav_path": clips[j], "best_rank": int(r[0]), "caption_ranks": ";".join(map(str, r.tolist())),
          "ap@10": average_precision_at_k(r)}
         for j, r in enumerate(a2t_ranks)],
        fieldnames=["clip", "wav_path", "best_rank", "caption_ranks", "ap@10"],
    )
    text = json.dumps(results, indent=1)
    atomic_write(os.path.join(folder, RESULTS_JSON), lambda f: f.write(text + "\n"), "w", encoding="utf-8")


# -------------------------------------------------------------------- main
def main(argv=None):
    """Parses flags, reads the split, loads the model, embeds clips and captions, scores both directions."""
    hparams_file, run_opts, overrides = common.parse_arguments(argv)
    run_opts = common.cpu_fallbacks(run_opts)
    hparams = common.load_hparams(hparams_file, overrides)
    dataset, split = hparams["dataset"], hparams["split"]
    # Read the split first: a wrong --data_folder fails before any weights are loaded or files written.
    clips, captions, caption_clip, counts = read_retrieval_set(dataset, hparams["data_folder"], split)
    if not clips:
        raise SystemExit(
            f"None of the {counts['clips_listed']} clips of the {dataset} {split} split was found below "
            f"{os.path.abspath(hparams['data_folder'])}."
        )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    folder = hparams["output_folder"]
    if counts["clips_missing"]:
        logger.warning("%d of the %d clips listed for %s %s are not on disk; they are skipped.",
                       counts["clips_missing"], counts["clips_listed"], dataset, split)

    model_source = load_model(hparams)
    model = hparams["model"]
    device = select_device(run_opts)
    model.to(device).eval()
    progress = not run_opts.get("noprogressbar", False)
    emb_dir = os.path.join(folder, EMB_SUBFOLDER)
    embed_audio_files(
        model, clips, emb_dir, sample_rate=hparams["sample_rate"], duration=hparams["eval_duration"],
        crop=hparams["eval_crop"], chunking=hparams["audio_chunking"], max_chunks=hparams["max_chunks"],
        batch_size=hparams["batch_size"], num_workers=hparams["num_workers"], dtype="float32", device=device,
        progress=progress, model_id=model_fingerprint(model),
    )
    audio_emb, _, _ = load_audio_set(emb_dir)
    skipped = read_skipped(emb_dir)
    unreadable = [row["wav_path"] for row in skipped]
    # The embedding rows follow the clip list, minus the unreadable clips.
    clips, captions, caption_clip = drop_clips(clips, captions, caption_clip, {int(row["index"]) for row in skipped})
    if len(clips) != audio_emb.shape[0]:
        raise SystemExit(f"{emb_dir} holds {audio_emb.shape[0]} audio embeddings for {len(clips)} clips; delete it and rerun.")
    if not clips:
        raise SystemExit(f"None of the {len(unreadable)} clips found could be read (see {emb_dir}/audio_skipped.csv).")
    text_emb = encode_texts(
        model, hparams["tokenizer"], captions, batch_size=hparams["text_batch_size"],
        max_length=hparams["text_max_length"], device=device, progress=progress, desc="embedding captions",
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
    main(sys.argv[1:])
