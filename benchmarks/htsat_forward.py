"""HTS-AT forward: ours (models/htsat.py) vs LAION-CLAP's reference module, same batch, same weights.

Builds LAION's ``HTSAT_Swin_Transformer`` (``laion_clap.clap_module.htsat.create_htsat_model``, with its
torchlibrosa front end) with random weights, loads its state dict into ours, and times, on CPU under
``torch.no_grad`` in float32 with every core, in interleaved repeats:

- the front end + forward of both (``ref({"waveform": wav})`` vs ``ours(wav)``);
- the front end alone (torchlibrosa ``Spectrogram`` + ``LogmelFilterBank`` vs ours).

With ``--fused`` the models are LAION's fused ones (``aff_2d``) and the clips are longer than the
10-s window: the reference's front end is its data pipeline (``get_mel`` + chunk selection of
``get_audio_features``, run per clip as its data loader does, with our chunk starts), ours is
``HTSAT.logmel`` + ``fusion_input`` on the batch.

Prints one JSON line: median clips/s of each, their ratio (ours / reference), the embeddings' largest
difference (max abs over norm) and the machine. Needs ``laion-clap`` (``pip install --no-deps -r
requirements-refs.txt``).

Usage::

    python benchmarks/htsat_forward.py [--batch 8] [--seconds 10] [--repeats 5] [--size tiny|base] [--fused]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from contextlib import suppress
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

from models.htsat import HTSAT, fusion_chunk_starts, from_reference_state_dict  # noqa: E402

LAION_FRONT = dict(sample_rate=48000, window_size=1024, hop_size=480, mel_bins=64, fmin=50, fmax=14000)


def import_laion():
    """LAION's ``clap_module.htsat`` and ``get_mel`` / ``get_audio_features``, without the package imports.

    ``laion_clap/__init__.py`` downloads tokenizers and needs h5py / torchvision: its packages are
    replaced by bare package objects while ``htsat`` is imported (h5py and torchvision stubbed), and the two
    data functions are run from their source.
    """
    spec = importlib.util.find_spec("laion_clap")
    if spec is None:
        raise SystemExit("laion-clap is not installed: pip install --no-deps -r requirements-refs.txt")
    root = spec.submodule_search_locations[0]
    before = dict(sys.modules)
    try:
        stubs = {"h5py": {}, "torchvision": {}, "torchvision.ops": {},
                 "torchvision.ops.misc": {"FrozenBatchNorm2d": torch.nn.BatchNorm2d}}
        for name, attrs in stubs.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
        for name in ("laion_clap", "laion_clap.clap_module"):
            module = types.ModuleType(name)
            module.__path__ = list(importlib.util.find_spec(name).submodule_search_locations)
            sys.modules[name] = module
        htsat = importlib.import_module("laion_clap.clap_module.htsat")
    finally:
        for name in set(sys.modules) - set(before):
            del sys.modules[name]
        sys.modules.update(before)
    import torchaudio

    with open(os.path.join(root, "training", "data.py"), encoding="utf-8") as f:
        text = f.read()
    source = "\n\n".join(ast.get_source_segment(text, node) for node in ast.parse(text).body
                         if isinstance(node, ast.FunctionDef) and node.name in ("get_mel", "get_audio_features"))

    class Resize:  # torchvision.transforms.Resize on a tensor, bilinear without antialias
        def __init__(self, size):
            self.size = list(size)

        def __call__(self, x):
            return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=False)[0]

    namespace = {"np": np, "torch": torch, "F": F, "torchaudio": torchaudio, "suppress": suppress,
                 "torchvision": SimpleNamespace(transforms=SimpleNamespace(Resize=Resize))}
    exec(compile(source, "laion_clap/training/data.py", "exec"), namespace)
    return htsat, namespace["get_audio_features"]


def build(size, fused, seed=0):
    """The reference module and ours with the same random weights."""
    htsat, get_audio_features = import_laion()
    cfg = SimpleNamespace(model_name=size, class_num=527, **LAION_FRONT)
    torch.manual_seed(seed)
    ref = htsat.create_htsat_model(cfg, enable_fusion=fused, fusion_type="aff_2d" if fused else "None").eval()
    options = dict(enable_fusion=True, frontend="htk") if fused else {}
    ours = HTSAT(**LAION_FRONT, classes_num=527, size=size, **options).eval()
    ours.load_state_dict(from_reference_state_dict(ref.state_dict()), strict=True)
    return ref, ours, get_audio_features


def reference_fusion_input(get_audio_features, wav, clip_samples):
    """LAION's data pipeline on each clip (as its loader does), with our chunk starts, stacked."""
    mels, longer = [], []
    original_choice = np.random.choice
    try:
        for clip in wav:
            total = clip.shape[0] // LAION_FRONT["hop_size"] + 1
            starts = iter(fusion_chunk_starts(total, clip_samples // LAION_FRONT["hop_size"] + 1))
            np.random.choice = lambda candidates, _s=starts: next(_s)
            sample = get_audio_features({}, clip, clip_samples, "fusion", "repeatpad", LAION_FRONT)
            mels.append(sample["mel_fusion"])
            longer.append(bool(sample["longer"]))
    finally:
        np.random.choice = original_choice
    return {"mel_fusion": torch.stack(mels), "longer": torch.tensor(longer)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None,
                        help="clip length (default 10 s; 25 s with --fused, so that fusion has chunks)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--fused", action="store_true", help="LAION's fused model (aff_2d) on long clips")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (25.0 if args.fused else 10.0)
    torch.set_num_threads(args.threads)

    ref, ours, get_audio_features = build(args.size, args.fused, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    wav = 0.1 * torch.randn(args.batch, int(seconds * LAION_FRONT["sample_rate"]), generator=gen)

    if args.fused:
        def ref_front():
            return reference_fusion_input(get_audio_features, wav, ours.clip_samples)

        def ref_forward():
            return ref(ref_front())

        def ours_front():
            return ours.fusion_input(ours.logmel(wav))
    else:
        def ref_front():
            return ref.logmel_extractor(ref.spectrogram_extractor(wav))

        def ref_forward():
            return ref({"waveform": wav})

        def ours_front():
            return ours.logmel(wav)

    def ours_forward():
        return ours(wav)

    times = {"ours": [], "reference": [], "ours_frontend": [], "reference_frontend": []}
    with torch.no_grad():
        # Warm-up (allocator, one-off kernel choices), and the embeddings' agreement.
        ref_out, ours_out = ref_forward(), ours_forward()
        ours_front(), ref_front()
        diff = float((ours_out["embedding"] - ref_out["embedding"]).abs().max() / ref_out["embedding"].norm())
        for repeat in range(args.repeats):
            pairs = [("ours", ours_forward), ("reference", ref_forward),
                     ("ours_frontend", ours_front), ("reference_frontend", ref_front)]
            if repeat % 2:  # alternate who goes first
                pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
            for name, fn in pairs:
                times[name].append(timed(fn)[0])

    def clips_per_s(name):
        return round(args.batch / statistics.median(times[name]), 3)

    result = {
        "benchmark": "htsat_forward",
        "size": args.size,
        "fused": args.fused,
        "batch": args.batch,
        "seconds": seconds,
        "repeats": args.repeats,
        "threads": args.threads,
        "ours_clips_per_s": clips_per_s("ours"),
        "reference_clips_per_s": clips_per_s("reference"),
        "ratio": round(clips_per_s("ours") / clips_per_s("reference"), 3),
        "ours_frontend_clips_per_s": clips_per_s("ours_frontend"),
        "reference_frontend_clips_per_s": clips_per_s("reference_frontend"),
        "frontend_ratio": round(clips_per_s("ours_frontend") / clips_per_s("reference_frontend"), 3),
        "embedding_max_rel_diff": diff,
        "machine": describe(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
