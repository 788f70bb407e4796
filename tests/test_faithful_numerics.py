"""The paper code's numerics as the paper YAMLs' defaults, ours as named options (issue 12, item 1).

- The log-mel front end in float32 under fp16 / bf16 autocast (``models/microsoft_clap.py``).
"""

import math

import pytest
import torch

from models.cnn14 import Cnn14


# ------------------------------------------------------------------ row 11: the front end under autocast
def _net():
    torch.manual_seed(0)
    return Cnn14(44100, 1024, 320, 64, 50, 14000, 10, out_emb=16, width=1 / 16).eval()


def _tone(amplitude, seconds=1.0, sr=44100):
    t = torch.arange(int(seconds * sr), dtype=torch.float32) / sr
    return (amplitude * torch.sin(2 * math.pi * 1000.0 * t))[None]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_logmel_is_float32_under_autocast(dtype):
    net = _net()
    wav = torch.randn(2, 22050) * 0.3
    with torch.no_grad():
        reference = net.logmel(wav)
        with torch.autocast("cpu", dtype=dtype):
            feats = net.logmel(wav)
            # Without the guard the mel product runs in the low precision (the test can fail).
            unguarded = net.logmel_extractor(net.spectrogram_extractor(wav))
    assert feats.dtype == torch.float32 and unguarded.dtype == dtype
    torch.testing.assert_close(feats, reference, atol=1e-5, rtol=0)


def test_loud_and_silent_clips_stay_finite_under_fp16():
    """A tone whose power exceeds float16's 65504, and silence (1e-10 is below float16's smallest number)."""
    net = _net()
    loud, silent = _tone(4.0), torch.zeros(1, 44100)
    with torch.no_grad():
        assert float(net.spectrogram_extractor(loud).max()) > 65504
        reference = net.logmel(loud)
        with torch.autocast("cpu", dtype=torch.float16):
            feats, quiet = net.logmel(loud), net.logmel(silent)
            unguarded = [net.logmel_extractor(net.spectrogram_extractor(w)) for w in (loud, silent)]
            embedding = net(loud)["embedding"]
    assert not any(bool(torch.isfinite(u).all()) for u in unguarded)  # what the guard prevents
    assert bool(torch.isfinite(feats).all()) and float(feats.max()) > 40
    torch.testing.assert_close(feats, reference, atol=1e-4, rtol=0)
    assert float(quiet.min()) == float(quiet.max()) == -100.0
    assert bool(torch.isfinite(embedding).all())
