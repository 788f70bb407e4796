"""The fast log-mel front end against the float64 reference formula,
librosa's mel filters and torchlibrosa, plus honouring loaded parameters."""

import numpy as np
import pytest
import torch

import models.frontend as frontend
from models.frontend import (
    STFT,
    LogmelFilterBank,
    Spectrogram,
    mel_filterbank,
    reference_logmel,
)

FLOOR = -100.0
TOL_DB = 1e-3

CONFIGS = {
    "panns32k": dict(sample_rate=32000, n_fft=1024, hop=320, n_mels=64, fmin=50, fmax=14000),
    "msclap44k": dict(sample_rate=44100, n_fft=1024, hop=320, n_mels=64, fmin=50, fmax=14000),
}


def test_signal(sample_rate, seconds=1.5, seed=0):
    """Noise + a 1 kHz sine, with a stretch of digital silence in the middle."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    wav = 0.1 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    wav[n // 3 : n // 3 + sample_rate // 2] = 0.0
    return wav.astype(np.float32)


test_signal.__test__ = False  # a helper, not a test


def ours_logmel(wav, cfg, batch_copies=1):
    spec = Spectrogram(cfg["n_fft"], cfg["hop"])
    mel = LogmelFilterBank(cfg["sample_rate"], cfg["n_fft"], cfg["n_mels"], cfg["fmin"], cfg["fmax"])
    x = torch.from_numpy(wav)[None].repeat(batch_copies, 1)
    with torch.no_grad():
        return mel(spec(x))[:, 0].numpy()


def reference(wav, cfg):
    return reference_logmel(
        wav.astype(np.float64),
        cfg["sample_rate"],
        cfg["n_fft"],
        cfg["hop"],
        cfg["n_mels"],
        cfg["fmin"],
        cfg["fmax"],
    )


def assert_db_close(ours, ref, tol=TOL_DB):
    """Compare where the reference is above the -100 dB floor; where it is
    at the floor, ours must be at the floor too."""
    assert ours.shape == ref.shape
    at_floor = ref <= FLOOR + 1e-9
    assert (~at_floor).any(), "signal never above the floor: the test would be vacuous"
    diff = np.abs(ours - ref)[~at_floor]
    assert diff.max() <= tol, f"max |diff| {diff.max():.3e} dB > {tol} dB"
    if at_floor.any():
        assert ours[at_floor].max() <= FLOOR + tol


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_reference_formula(name):
    cfg = CONFIGS[name]
    wav = test_signal(cfg["sample_rate"])
    ref = reference(wav, cfg)
    assert (ref <= FLOOR + 1e-9).any(), "the silent stretch should reach the floor"
    ours = ours_logmel(wav, cfg)[0]
    assert ours.shape == (len(wav) // cfg["hop"] + 1, cfg["n_mels"])
    assert_db_close(ours, ref)


def test_reference_formula_is_sensitive():
    # Guard against a comparison that cannot fail: a 1 % gain change
    # (0.086 dB) must be far outside the tolerance.
    cfg = CONFIGS["msclap44k"]
    wav = test_signal(cfg["sample_rate"], seconds=0.5)
    with pytest.raises(AssertionError):
        assert_db_close(ours_logmel(wav * np.float32(1.005), cfg)[0], reference(wav, cfg))


def test_batched_and_chunked_paths_agree(monkeypatch):
    cfg = CONFIGS["msclap44k"]
    wav = test_signal(cfg["sample_rate"], seconds=0.5)
    single = ours_logmel(wav, cfg)[0]
    # Force several small chunks in STFT.power.
    monkeypatch.setattr(frontend, "_CHUNK_BYTES", 1)
    batched = ours_logmel(wav, cfg, batch_copies=5)
    for row in batched:
        np.testing.assert_allclose(row, single, atol=1e-4)


def test_autograd_path_matches_no_grad_path():
    cfg = CONFIGS["panns32k"]
    wav = torch.from_numpy(test_signal(cfg["sample_rate"], seconds=0.3))[None]
    spec = Spectrogram(cfg["n_fft"], cfg["hop"])
    with torch.no_grad():
        plain = spec(wav)
    tracked = spec(wav.clone().requires_grad_(True))
    assert tracked.requires_grad
    tracked.sum().backward()
    torch.testing.assert_close(tracked.detach(), plain, rtol=1e-5, atol=1e-5)


def test_fft_and_conv_paths_agree():
    stft = STFT(512, 160)
    wav = torch.from_numpy(test_signal(16000, seconds=0.5))[None]
    with torch.no_grad():
        fft_real, fft_imag = stft(wav)
        fft_power = stft.power(wav)
        stft.uses_fft = False
        conv_real, conv_imag = stft(wav)
        conv_power = stft.power(wav)
    assert fft_real.shape == (1, 1, 0.5 * 16000 // 160 + 1, 257)
    torch.testing.assert_close(fft_real, conv_real, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fft_imag, conv_imag, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fft_power, conv_power, atol=1e-4, rtol=1e-4)


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax in [
        (44100, 1024, 64, 50, 14000),
        (32000, 1024, 64, 50, 14000),
        (16000, 512, 40, 0, None),
    ]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
        assert ours.dtype == np.float32 and ours.shape == (n_fft // 2 + 1, n_mels)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


def test_stft_kernels_match_torchlibrosa():
    stft_mod = pytest.importorskip("torchlibrosa.stft")
    theirs = stft_mod.STFT(n_fft=1024, hop_length=320, window="hann", center=True, pad_mode="reflect")
    ours = STFT(1024, 320)
    torch.testing.assert_close(ours.conv_real.weight, theirs.conv_real.weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.conv_imag.weight, theirs.conv_imag.weight, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torchlibrosa(name):
    stft_mod = pytest.importorskip("torchlibrosa.stft")
    cfg = CONFIGS[name]
    spec = stft_mod.Spectrogram(
        n_fft=cfg["n_fft"],
        hop_length=cfg["hop"],
        win_length=cfg["n_fft"],
        window="hann",
        center=True,
        pad_mode="reflect",
        freeze_parameters=True,
    )
    mel = stft_mod.LogmelFilterBank(
        sr=cfg["sample_rate"],
        n_fft=cfg["n_fft"],
        n_mels=cfg["n_mels"],
        fmin=cfg["fmin"],
        fmax=cfg["fmax"],
        ref=1.0,
        amin=1e-10,
        top_db=None,
        freeze_parameters=True,
    )
    wav = test_signal(cfg["sample_rate"])
    with torch.no_grad():
        theirs = mel(spec(torch.from_numpy(wav)[None]))[0, 0].numpy()
    assert_db_close(ours_logmel(wav, cfg)[0], theirs)


def test_loaded_stft_kernels_are_honoured():
    n_fft, hop = 256, 64
    spec = Spectrogram(n_fft, hop)
    wav = torch.from_numpy(test_signal(8000, seconds=0.25))[None]
    with torch.no_grad():
        before = spec(wav)
    assert spec.stft.uses_fft

    # A rectangular-window DFT instead of the Hann one.
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    rect_real = np.cos(2 * np.pi * k * n / n_fft)
    rect_imag = -np.sin(2 * np.pi * k * n / n_fft)
    state = spec.state_dict()
    state["stft.conv_real.weight"] = torch.tensor(rect_real[:, None, :], dtype=torch.float32)
    state["stft.conv_imag.weight"] = torch.tensor(rect_imag[:, None, :], dtype=torch.float32)
    spec.load_state_dict(state)
    assert not spec.stft.uses_fft
    with torch.no_grad():
        after = spec(wav)[0, 0].double().numpy()

    padded = np.pad(wav[0].double().numpy(), (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
    expected = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    np.testing.assert_allclose(after, expected, rtol=1e-3, atol=1e-3)
    assert not np.allclose(after, before[0, 0].double().numpy(), rtol=1e-2)

    # Loading the formula kernels back returns to the FFT path.
    spec.load_state_dict(Spectrogram(n_fft, hop).state_dict())
    assert spec.stft.uses_fft
    with torch.no_grad():
        torch.testing.assert_close(spec(wav), before)


def test_loaded_melw_is_used():
    fb = LogmelFilterBank(16000, 512, 40, 0, 8000)
    power = torch.rand(2, 1, 7, 257) + 0.1
    new_w = torch.rand(257, 40)
    fb.load_state_dict({"melW": new_w})
    with torch.no_grad():
        out = fb(power)
    expected = 10 * torch.log10(torch.clamp(power @ new_w, min=1e-10))
    torch.testing.assert_close(out, expected)
    constructor_w = torch.from_numpy(mel_filterbank(16000, 512, 40, 0, 8000))
    assert not torch.allclose(out, 10 * torch.log10(power @ constructor_w))


def test_parameters_are_frozen():
    spec = Spectrogram(64, 16)
    fb = LogmelFilterBank(8000, 64, 8, 0, 4000)
    names = {"stft.conv_real.weight", "stft.conv_imag.weight"}
    assert set(dict(spec.named_parameters())) == names
    assert not any(p.requires_grad for p in spec.parameters())
    assert not fb.melW.requires_grad
    assert set(spec.state_dict()) == names  # the window buffer is not persisted
