#!/usr/bin/env python3
"""Curation, DS: keeps the training pairs whose caption is close to a label prompt of the target set.

Each label of the target set (ESC-50, UrbanSound8K or TUT 2017) becomes
``"this is a sound of <label>"``; the teacher's text tower embeds the prompts
and the distinct captions of ``--target_csv_path``; a training pair is kept
when its caption's best cosine to a prompt is ≥ ``--sim_threshold``. The DS
set keeps the original audio. The kept captions' embeddings are saved in
``--emb_dir`` for ADS (``retrieve_from_emb_thresh.py`` with a
``*_insper_audioset_dudsv3_retr.yaml``).

If ``emb_dir`` already holds the caption embeddings of the same CSV made by the
same teacher (the embedding step with ``--text_pathfile`` equal to
``--target_csv_path``), they are reused instead of recomputed;
``--target_emb_path`` gives them as the paper code's file (one ``.npy`` row
per row of ``--target_csv_path``). ``--label_encoder_path`` takes the labels
from a label file (the paper code's ``label_encoder_*.txt``).

To run this recipe:
    python recipes/retrieve_ds_t2t.py hparams/curation/esc_insper_t2t_retr.yaml \
        --target_csv_path=$TARGET_CSV_PATH --clap_ckpt_path=$CLAP_CKPT_PATH \
        --ssl_checkpoints_dir=$SSL_CHECKPOINTS_DIR --emb_dir=$EMB_DIR --sim_threshold=$SIM_THRESHOLD

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import os
import sys

import numpy as np
import speechbrain as sb

from curation.builders import (
    ds_prompts, eval_freesound_ids, caption_ids_in, row_ids, select_ds_captions, write_summary,
)
from curation.join import PairStats
from curation.paper_files import first_rows, load_paper_rows
from dataset.labels import dataset_labels, labels_in_file_order
from dataset.manifest import read_caption_csv, write_csv
from embeddings.encoders import encode_texts
from embeddings.keys import list_digest, model_fingerprint
from embeddings.lists import caption_table, write_caption_table
from embeddings.store import STORAGE_DTYPES, load_embedding_info, save_npy, update_info
from evaluation.protocols import checkpoint_protocol, get_protocol
from experiment.command_line import setup
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision
from experiment.safety import run_cli
from experiment.weights import load_eval_model

logger = logging.getLogger(__name__)


def caption_embeddings(model, hparams, table, emb_dir, device, fingerprint, progress, precision):
    """Embeddings of the table's captions (storage dtype): reused from the embedding step when they match."""
    texts = [entry["caption"] for entry in table]
    dtype = hparams["emb_dtype"]
    info = load_embedding_info(emb_dir).get("text", {})
    path = os.path.join(emb_dir, "text_emb.npy")
    if (
        info.get("items_digest") == list_digest(texts) and info.get("model") == fingerprint
        and info.get("dtype") == dtype and info.get("max_length") == hparams["text_max_length"]
        and info.get("precision", "fp32") == precision and os.path.isfile(path)
    ):
        logger.info("Reusing the caption embeddings of the embedding step (%s).", path)
        return np.load(path)
    emb = encode_texts(
        model, hparams["tokenizer"], texts, batch_size=hparams["text_batch_size"],
        max_length=hparams["text_max_length"], device=device, progress=progress, desc="captions", precision=precision,
    )
    return emb.astype(STORAGE_DTYPES[dtype])


def eval_overlap_ids(hparams):
    """``(eval_ids, eval_source)``: the Freesound ids of the evaluation set's recordings, for the overlap audit
    (a training recording that is also an evaluation recording); ``eval_source`` None when there is none."""
    eval_ids, eval_source = set(), None
    if hparams.get("eval_meta_path"):
        eval_ids, eval_source = eval_freesound_ids(hparams["eval_meta_path"])
        if not eval_ids:
            # TUT 2017 has no Freesound ids: nothing to audit.
            eval_source = None
    elif hparams["drop_eval_overlap"]:
        raise SystemExit(
            "--drop_eval_overlap=True needs --eval_meta_path or --zs_data_folder (the evaluation set's metadata)."
        )
    return eval_ids, eval_source


def ds_pairs(rows, by_caption, extra, eval_ids, drop_eval_overlap):
    """``(pairs, overlap_pairs, dropped_pairs)``: the DS pairs, every training row whose caption was kept
    (``by_caption``: its label and similarity), with the original audio. A row recorded from an evaluation
    recording is an overlap; dropped on request."""
    pairs, overlap_pairs, dropped_pairs = [], 0, 0
    for row in rows:
        hit = by_caption.get((row.get("caption") or "").strip())
        if hit is None or not row.get("wav_path"):
            # A caption without audio (a text file of the pipeline's caption pool) is a DS caption for ADS only.
            continue
        in_eval = any(i in eval_ids for i in row_ids(row.get("source_id")))
        overlap_pairs += in_eval
        if in_eval and drop_eval_overlap:
            dropped_pairs += 1
            continue
        pair = {"ID": row["ID"], "wav_path": row["wav_path"], "caption": row["caption"], "similarity": f"{hit[1]:.6f}",
                "label": hit[0]}
        pair.update({f: row.get(f, "") for f in extra})
        pairs.append(pair)
    return pairs, overlap_pairs, dropped_pairs


def log_summary(zs_dataset, summary):
    """Logs the counts, the overlap audit, the similarity histogram and the labels with most captions."""
    lines = [
        f"DS {zs_dataset}: {summary['pairs_kept']} / {summary['pairs_total']} pairs kept "
        f"({summary['captions_kept']} / {summary['captions_total']} distinct captions, "
        f"threshold {summary['threshold']}); "
        f"{summary['labels_with_caption']} / {summary['labels']} labels have a caption",
    ]
    if summary["eval_ids_from"]:
        lines.append(
            f"  evaluation overlap ({summary['eval_ids_from']}): {summary['eval_overlap_pairs']} pairs "
            f"({summary['eval_overlap_dropped']} dropped), "
            f"{summary['eval_overlap_captions']} captions ({summary['eval_overlap_captions_dropped']} dropped)"
        )
    lines += [f"  {k:<13} {v}" for k, v in summary["similarity_histogram"].items()]
    top = list(summary["captions_per_label"].items())[:10]
    lines.append("  captions per label: " + ", ".join(f"{k} {v}" for k, v in top))
    logger.info("%s", "\n".join(lines))


def main(argv=None):
    """Embeds prompts and captions, selects the DS captions, writes the DS pairs and caption embeddings."""
    hparams, run_opts, hparams_file, overrides = setup(argv, distributed=False)
    hold_folder_lock(hparams["log_folder"], "retrieve_ds_t2t.py")
    sb.create_experiment_directory(
        experiment_directory=hparams["log_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    emb_dir, name = hparams["emb_dir"], hparams["caption_set"]
    os.makedirs(emb_dir, exist_ok=True)
    if hparams["emb_dtype"] not in STORAGE_DTYPES:
        raise SystemExit(f"--emb_dtype must be one of {sorted(STORAGE_DTYPES)}, got {hparams['emb_dtype']!r}.")
    progress = not run_opts.get("noprogressbar", False)

    # The paper's code takes the labels from its label_encoder_*.txt alone (--label_encoder_path).
    labels = labels_in_file_order(dataset_labels(hparams["zs_dataset"], hparams.get("zs_data_folder")),
                                  hparams.get("label_encoder_path"), "label_encoder_path", require_all=False)
    prompts = ds_prompts(labels, hparams["prompt_prefix"])
    rows = read_caption_csv(hparams["target_csv_path"])
    table = caption_table(rows)
    if not table:
        raise SystemExit(f"--target_csv_path={hparams['target_csv_path']} has no captions.")
    logger.info("DS for %s: %d labels, %d distinct captions of %d pairs.",
                hparams["zs_dataset"], len(labels), len(table), len(rows))
    # The paper code's caption embeddings (one row per row of target_csv_path) instead of embedding the captions.
    paper_rows = None
    if hparams.get("target_emb_path"):
        paper_rows = load_paper_rows(hparams["target_emb_path"], len(rows), "target_emb_path", "target_csv_path",
                                     "CSV row")

    model, device, source = load_eval_model(hparams, run_opts, purpose="Curation")
    # The fingerprint the embedding step records for this teacher (with its protocol), so ADS can check the two.
    fingerprint = model_fingerprint(model, get_protocol(hparams.get("protocol") or checkpoint_protocol(source)).name)
    precision = inference_precision(hparams, run_opts)
    storage = STORAGE_DTYPES[hparams["emb_dtype"]]
    prompt_emb = encode_texts(model, hparams["tokenizer"], prompts, max_length=hparams["text_max_length"],
                              device=device, precision=precision).astype(storage)
    if paper_rows is None:
        caption_emb = caption_embeddings(model, hparams, table, emb_dir, device, fingerprint, progress, precision)
    else:
        caption_emb = np.ascontiguousarray(paper_rows[first_rows(rows, table)]).astype(storage)
        logger.warning("Caption embeddings from %s (the paper code's file, which records no model): make sure the "
                       "teacher that embedded them is the one given here.", hparams["target_emb_path"])

    kept, label_of, sim = select_ds_captions(caption_emb, prompt_emb, hparams["sim_threshold"],
                                             block=hparams["caption_bs"])

    eval_ids, eval_source = eval_overlap_ids(hparams)
    extra = [f for f in ("source", "source_id") if rows and f in rows[0]]
    by_caption = {table[c]["caption"]: (labels[label_index], s)
                  for c, label_index, s in zip(kept.tolist(), label_of.tolist(), sim.tolist())}
    pairs, overlap_pairs, dropped_pairs = ds_pairs(rows, by_caption, extra, eval_ids, hparams["drop_eval_overlap"])
    # DS captions for ADS: a caption written for an evaluation recording is an overlap too.
    caption_flagged = caption_ids_in(table, eval_ids)
    overlap_captions = int(caption_flagged[kept].sum())
    if hparams["drop_eval_overlap"]:
        keep = ~caption_flagged[kept]
        kept, label_of, sim = kept[keep], label_of[keep], sim[keep]

    # The DS caption set for ADS: embeddings first, the info section last (it marks the set complete).
    ds_table = [dict(table[c], label=labels[label_index], similarity=f"{s:.6f}")
                for c, label_index, s in zip(kept.tolist(), label_of.tolist(), sim.tolist())]
    save_npy(os.path.join(emb_dir, f"{name}_emb.npy"), np.ascontiguousarray(caption_emb[kept]))
    write_caption_table(os.path.join(emb_dir, f"{name}_captions.csv"), ds_table, extra_fields=["label", "similarity"])
    write_csv(hparams["ds_pairs_csv"], pairs, fieldnames=["ID", "wav_path", "caption", "similarity", "label"] + extra)
    if hparams.get("output_emb_path"):  # the paper code's DS embeddings: one row per row of ds_pairs_csv
        from curation.paper_outputs import write_caption_rows

        write_caption_rows(hparams["output_emb_path"], caption_emb, table, pairs)

    stats = PairStats(len(table), len(labels), hparams["sim_threshold"])
    stats.update(kept, label_of, sim)
    per_label = np.bincount(label_of, minlength=len(labels)) if kept.size else np.zeros(len(labels), np.int64)
    summary = {
        "curation": name, "threshold": hparams["sim_threshold"], "labels": len(labels),
        "prompt_prefix": hparams["prompt_prefix"], "pairs_total": len(rows), "pairs_kept": len(pairs),
        "captions_total": len(table), "captions_kept": int(kept.size),
        "labels_with_caption": int((per_label > 0).sum()),
        "captions_per_label": {labels[i]: int(per_label[i])
                               for i in np.argsort(-per_label, kind="stable") if per_label[i]},
        "similarity_histogram": stats.as_dict()["histogram"],
        "eval_ids_from": eval_source, "eval_overlap_pairs": overlap_pairs if eval_source else None,
        "eval_overlap_captions": overlap_captions if eval_source else None, "eval_overlap_dropped": dropped_pairs,
        "eval_overlap_captions_dropped": overlap_captions if hparams["drop_eval_overlap"] else 0,
        "ds_pairs_csv": os.path.abspath(hparams["ds_pairs_csv"]),
    }
    write_summary(os.path.join(emb_dir, f"{name}_summary.json"), summary)
    update_info(emb_dir, name, {
        # Unknown when the captions came from the paper code's file: ADS then cannot check the teacher.
        "model": fingerprint if paper_rows is None else None, "rows": int(kept.size), "dtype": hparams["emb_dtype"],
        "threshold": hparams["sim_threshold"], "labels": labels,
        "target_csv_path": os.path.abspath(hparams["target_csv_path"]), "precision": precision,
    })

    log_summary(hparams["zs_dataset"], summary)
    print(f"DS pairs: {os.path.abspath(hparams['ds_pairs_csv'])}; "
          f"DS caption embeddings for ADS: {os.path.abspath(os.path.join(emb_dir, name + '_emb.npy'))}", flush=True)
    return summary


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
