"""Audio embedding, end to end (files on disk → stored embeddings) against the model's forward alone.

In one process, on the same synthetic AudioSet-like files (``--clips`` WAV
files of ``--seconds`` s at ``--file_rate`` Hz) and a randomly initialised
full-size MS CLAP 2022 audio tower (CNN14, 44.1 kHz, 5-s centre crops):

- **end to end**: ``embeddings.extract.embed_audio_files`` as the curation step
  runs it (read, resample, crop, log-mel front end, CNN14, projection, shard
  files and the merged ``.npy``), at each precision;
- **model alone**: the same batches, already decoded and in memory, through
  ``encode_audio`` at each precision (the ceiling of the end-to-end figure);
- **reference**: our CNN14 forward against the reference implementation's
  (``msclap``'s PANNs CNN14 with torchlibrosa's front end, the same weights)
  on the same batch in fp32, and the largest difference of their embeddings.

Top-level keys: ``e2e_fraction_of_model`` (fp32 end to end over fp32 model
alone), ``bf16_speedup`` (end to end, bf16 over fp32) and
``ratio_vs_reference`` (our fp32 forward's clips/s over the reference's).
Medians over ``--repeats`` runs that alternate the methods.

bf16 is measured by default only where the device multiplies it natively
(``models.precision.native_bf16``: a CPU with ``avx512_bf16`` or ``amx_bf16``,
a CUDA GPU with bf16); elsewhere PyTorch emulates it, much slower than fp32
(a default run took over 25 minutes on an AVX2-only AMD Zen 3), so it is
skipped, with a line and the JSON field ``bf16_skipped`` saying why.
``--precisions=fp32,bf16`` measures it anyway.

Usage (the reference needs ``pip install --no-deps msclap``, benchmark only)::

    python benchmarks/embed.py [--clips 128] [--batch 16] [--num_workers 1] [--device cpu|cuda]
        [--precisions fp32,bf16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile
import torch

from dataset.clips import AudioClips, collate_audio
from embeddings.extract import embed_audio_files
from embeddings.options import AudioEmbeddingOptions
from machine import describe, synchronize
from models.factory import MS_CLAP_2022, create_model
from models.precision import autocast, native_bf16


def write_clips(folder, count, seconds, rate, seed=0):
    """``count`` mono WAV files (noise and tones, like field recordings); returns their paths."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        tone = np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * rng.uniform(0.05, 0.3)
        wav = (0.1 * rng.standard_normal(t.size) + tone).astype(np.float32)
        path = os.path.join(folder, f"Y{i:05d}.wav")
        soundfile.write(path, wav, rate, subtype="PCM_16")
        paths.append(path)
    return paths


def full_size_audio_model(folder, device):
    """A random full-size MS CLAP 2022 model (the text tower is a tiny BERT: only audio is embedded)."""
    from transformers import BertConfig

    bert = os.path.join(folder, "tiny-bert")
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               vocab_size=100).save_pretrained(bert)
    keys = {k: v for k, v in MS_CLAP_2022.items() if k not in ("text_max_length", "eval_duration")}
    torch.manual_seed(0)
    return create_model(**dict(keys, text_model=bert, txt_emb_dim=32), spec_augment=False).to(device).eval()


def choose_precisions(requested, device):
    """``(precisions, bf16_skipped)``: those given (comma-separated), else fp32, bf16 where native, fp16 on CUDA.

    ``bf16_skipped`` is None, or the reason bf16 was left out of the default set.
    """
    if requested:
        return [p.strip() for p in requested.split(",") if p.strip()], None
    native, why = native_bf16(device)
    precisions = ["fp32"] + (["bf16"] if native else []) + (["fp16"] if torch.device(device).type == "cuda" else [])
    return precisions, None if native else f"{why}; --precisions=fp32,bf16 measures it anyway"


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each file (AudioSet: 10 s)")
    parser.add_argument("--file_rate", type=int, default=32000, help="sample rate of the files (AudioSet: 32 kHz)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader processes decoding audio")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated (default: fp32, bf16 where the device has it natively, fp16 on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions, bf16_skipped = choose_precisions(args.precisions, device)
    if bf16_skipped:
        log(f"bf16 not measured: {bf16_skipped}")
    sample_rate, duration = MS_CLAP_2022["sample_rate"], MS_CLAP_2022["eval_duration"]

    try:
        from msclap.models.audio import Cnn14 as ReferenceCnn14
    except ImportError as err:
        raise SystemExit(f"The reference CNN14 comes from msclap: pip install --no-deps msclap ({err}).") from err

    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_clips(folder, args.clips, args.seconds, args.file_rate)
        model = full_size_audio_model(folder, device)
        # The model's input, decoded once: the batches the end-to-end run feeds it.
        clips = AudioClips(paths, sample_rate, duration, crop="center")
        batches = [collate_audio([clips[i] for i in range(s, min(s + args.batch, len(paths)))])["wav"]
                   for s in range(0, len(paths), args.batch)]
        batches = [b.to(device) for b in batches]
        ours = model.audio_encoder.base
        reference = ReferenceCnn14(sample_rate, 1024, 320, 64, 50, 14000, 527, 2048).to(device).eval()
        reference.load_state_dict(ours.state_dict())
        log(f"{len(paths)} files of {args.seconds:g} s at {args.file_rate} Hz, batch {args.batch}, "
            f"{args.num_workers} worker(s), {args.threads} threads, {device}")

        def end_to_end(precision, repeat):
            def run():
                return embed_audio_files(model, paths, os.path.join(folder, f"out-{precision}-{repeat}"),
                                         AudioEmbeddingOptions(
                                             sample_rate=sample_rate, duration=duration, crop="center",
                                             batch_size=args.batch, shard_size=args.clips,
                                             num_workers=args.num_workers, dtype="float16", device=str(device),
                                             progress=False, model_id="bench", precision=precision))
            return run

        def model_alone(precision):
            @torch.inference_mode()
            def run():
                with autocast(precision, device):
                    for wav in batches:
                        model.encode_audio(wav)
            return run

        def forward(net):
            @torch.inference_mode()
            def run():
                for wav in batches:
                    net(wav)
            return run

        for repeat in range(args.repeats):
            # Alternate the methods so that a change of machine load hits all of them.
            methods = [(f"model_{p}", model_alone(p)) for p in precisions]
            methods += [(f"e2e_{p}", end_to_end(p, repeat)) for p in precisions]
            methods += [("cnn14_ours_fp32", forward(ours)), ("cnn14_reference_fp32", forward(reference))]
            for name, fn in methods:
                _, seconds = timed(fn, device)
                runs.setdefault(name, []).append(seconds)
                log(f"  {name}: {seconds:.2f} s, {len(paths) / seconds:.2f} clips/s")
        with torch.inference_mode():
            wav = batches[0]
            difference = float((ours(wav)["embedding"] - reference(wav)["embedding"]).abs().max())

    def rate(name):
        return round(len(paths) / statistics.median(runs[name]), 3)

    out = {
        "machine": dict(describe(device), threads=args.threads),
        "settings": {"clips": len(paths), "seconds": args.seconds, "file_rate": args.file_rate, "batch": args.batch,
                     "num_workers": args.num_workers, "model": "MS CLAP 2022 audio tower (CNN14), random weights",
                     "sample_rate": sample_rate, "duration": duration},
        "clips_per_s": {name: rate(name) for name in runs},
        "precisions": precisions,
        "bf16_skipped": bf16_skipped,
    }
    for p in precisions:
        out[f"e2e_fraction_of_model_{p}"] = round(rate(f"e2e_{p}") / rate(f"model_{p}"), 3)
    out["e2e_fraction_of_model"] = out["e2e_fraction_of_model_fp32"]
    for p in precisions[1:]:
        out[f"{p}_speedup"] = round(rate(f"e2e_{p}") / rate("e2e_fp32"), 3)
        out[f"{p}_model_speedup"] = round(rate(f"model_{p}") / rate("model_fp32"), 3)
    out["ratio_vs_reference"] = round(rate("cnn14_ours_fp32") / rate("cnn14_reference_fp32"), 3)
    out["max_embedding_difference_vs_reference"] = difference
    out["repeats"] = args.repeats
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
