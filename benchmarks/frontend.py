"""Log-mel front end: ours (torch.stft) vs torchlibrosa (conv1d DFT).

Times ``models.frontend.Spectrogram`` + ``LogmelFilterBank`` against
torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank`` with PANNs / MS CLAP
settings on the same random batch, on CPU under ``torch.no_grad``, and
reports clips/s, the speed ratio and the largest output difference in dB.

Usage::

    python benchmarks/frontend.py [--batch 32] [--seconds 5] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn

from models.frontend import LogmelFilterBank, Spectrogram
from machine import cpu_model


def build_ours(sr, n_fft, hop, n_mels, fmin, fmax) -> nn.Module:
    """Our Spectrogram + LogmelFilterBank, in eval mode."""
    return nn.Sequential(Spectrogram(n_fft, hop), LogmelFilterBank(sr, n_fft, n_mels, fmin, fmax)).eval()


def build_torchlibrosa(sr, n_fft, hop, n_mels, fmin, fmax) -> nn.Module:
    """torchlibrosa's front end with the settings PANNs uses."""
    from torchlibrosa.stft import LogmelFilterBank as TLLogmel
    from torchlibrosa.stft import Spectrogram as TLSpectrogram

    spec = TLSpectrogram(
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft,
        window="hann",
        center=True,
        pad_mode="reflect",
        freeze_parameters=True,
    )
    logmel = TLLogmel(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        ref=1.0,
        amin=1e-10,
        top_db=None,
        freeze_parameters=True,
    )
    return nn.Sequential(spec, logmel).eval()


def time_module(module: nn.Module, wav: torch.Tensor, warmup: int, repeats: int) -> list:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            module(wav)
        for _ in range(repeats):
            start = time.perf_counter()
            module(wav)
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> dict:
    """Run the comparison; returns the result dict it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--hop", type=int, default=320)
    parser.add_argument("--mels", type=int, default=64)
    parser.add_argument("--fmin", type=float, default=50.0)
    parser.add_argument("--fmax", type=float, default=14000.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    params = (args.sample_rate, args.window, args.hop, args.mels, args.fmin, args.fmax)
    ours = build_ours(*params)
    reference = build_torchlibrosa(*params)
    gen = torch.Generator().manual_seed(args.seed)
    wav = 0.1 * torch.randn(args.batch, int(args.seconds * args.sample_rate), generator=gen)

    with torch.no_grad():
        max_diff = float((ours(wav) - reference(wav)).abs().max())
    # Interleave the two so slow drifts of a shared machine hit both alike.
    t_ours, t_ref = [], []
    for _ in range(args.repeats):
        t_ours += time_module(ours, wav, args.warmup if not t_ours else 0, 1)
        t_ref += time_module(reference, wav, args.warmup if not t_ref else 0, 1)

    def summary(times):
        best, median = min(times), statistics.median(times)
        return {
            "best_s": best,
            "median_s": median,
            "clips_per_s_best": args.batch / best,
            "clips_per_s_median": args.batch / median,
        }

    result = {
        "ours": summary(t_ours),
        "torchlibrosa": summary(t_ref),
        "ratio_best": min(t_ref) / min(t_ours),
        "ratio_median": statistics.median(t_ref) / statistics.median(t_ours),
        "max_abs_diff_db": max_diff,
        "config": {
            "batch": args.batch,
            "seconds": args.seconds,
            "sample_rate": args.sample_rate,
            "window": args.window,
            "hop": args.hop,
            "mels": args.mels,
            "fmin": args.fmin,
            "fmax": args.fmax,
            "repeats": args.repeats,
        },
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if args.json:
        print(json.dumps(result))
    else:
        m = result["machine"]
        print(f"machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}")
        print(
            f"batch {args.batch} x {args.seconds:g} s @ {args.sample_rate} Hz, window {args.window}, "
            f"hop {args.hop}, {args.mels} mels, {args.fmin:g}-{args.fmax:g} Hz, {args.repeats} repeats"
        )
        for name in ("ours", "torchlibrosa"):
            r = result[name]
            print(
                f"{name:>13}: {r['clips_per_s_best']:8.1f} clips/s best, "
                f"{r['clips_per_s_median']:8.1f} clips/s median"
            )
        print(f"ratio ours/torchlibrosa: {result['ratio_best']:.2f}x best, {result['ratio_median']:.2f}x median")
        print(f"max |ours - torchlibrosa|: {max_diff:.2e} dB")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
