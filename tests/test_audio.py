"""Tests for dataset.audio: reading, mono mix, resampling, tiling/cropping, errors."""

import numpy as np
import pytest
import soundfile
import torch

from dataset.audio import (
    AUDIO_EXTENSIONS,
    AudioReadError,
    fit_length,
    load_audio,
    probe_audio,
    read_audio_mono,
    resample,
)


def _write(path, data, sr, **kwargs):
    soundfile.write(str(path), data, sr, **kwargs)
    return path


def _ramp(n):
    # Distinct values so that any offset error shows up.
    return np.linspace(-0.9, 0.9, n).astype(np.float32)


def test_stereo_is_averaged_to_mono(tmp_path):
    left = _ramp(1000)
    right = np.sin(np.arange(1000) / 7.0).astype(np.float32) * 0.5
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav, sr = read_audio_mono(path)  # pathlib.Path accepted
    assert sr == 16000 and wav.dtype == np.float32 and wav.shape == (1000,)
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-7)
    assert probe_audio(str(path)) == (1000, 16000, 2)


@pytest.mark.parametrize("orig_sr", [48000, 22050])
def test_resampled_to_16k_with_the_right_length(tmp_path, orig_sr):
    t = np.arange(orig_sr) / orig_sr  # 1 s
    path = _write(tmp_path / f"tone_{orig_sr}.wav", 0.5 * np.sin(2 * np.pi * 440 * t), orig_sr)
    wav = load_audio(path, 16000)
    assert wav.dtype == torch.float32 and wav.shape == (16000,)
    # The tone survives: its energy stays at 440 Hz.
    spectrum = torch.fft.rfft(wav).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1
    fixed = load_audio(path, 16000, duration=1.0, crop="start")
    assert fixed.shape == (16000,)


def test_resample_is_identity_for_equal_rates():
    wav = torch.randn(100)
    assert resample(wav, 16000, 16000) is wav
    assert resample(wav, 16000, 8000).shape == (50,)


def test_short_clip_is_tiled(tmp_path):
    sr = 16000
    short = _ramp(int(0.05 * sr))  # 800 samples
    path = _write(tmp_path / "short.wav", short, sr, subtype="FLOAT")
    wav = load_audio(path, sr, duration=1.0)
    assert wav.shape == (sr,)
    k = np.arange(sr)
    np.testing.assert_array_equal(wav.numpy(), short[k % len(short)])


def test_random_crop_follows_the_generator(tmp_path):
    sr = 8000
    path = _write(tmp_path / "long.wav", _ramp(10 * sr), sr, subtype="FLOAT")

    def crop(seed):
        return load_audio(path, sr, duration=1.0, crop="random", generator=torch.Generator().manual_seed(seed))

    a, b = crop(0), crop(0)
    assert a.shape == (sr,)
    assert torch.equal(a, b)
    crops = [crop(seed) for seed in range(1, 6)]
    assert any(not torch.equal(a, c) for c in crops)
    # Without a generator the global RNG drives it, so torch.manual_seed reproduces it.
    torch.manual_seed(7)
    c1 = load_audio(path, sr, duration=1.0)
    torch.manual_seed(7)
    c2 = load_audio(path, sr, duration=1.0)
    assert torch.equal(c1, c2)
    # Every crop is a contiguous window of the file.
    full = load_audio(path, sr)
    offset = int(torch.nonzero(full == a[0])[0])
    assert torch.equal(full[offset : offset + sr], a)


def test_start_and_center_crops_are_deterministic():
    wav = torch.arange(100.0)
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(fit_length(wav, 10, crop="start", generator=gen), torch.arange(10.0))
    assert torch.equal(fit_length(wav, 10, crop="center"), torch.arange(45.0, 55.0))
    torch.manual_seed(0)
    first = fit_length(wav, 10, crop="center")
    torch.manual_seed(1)
    assert torch.equal(first, fit_length(wav, 10, crop="center"))
    assert torch.equal(fit_length(wav, 100, crop="random"), wav)
    with pytest.raises(ValueError, match="crop"):
        fit_length(wav, 10, crop="middle")


@pytest.mark.parametrize(
    "name,subtype,atol",
    [("pcm24.wav", "PCM_24", 1e-6), ("float.wav", "FLOAT", 0.0), ("pcm16.flac", "PCM_16", 1e-4),
     ("pcm24.flac", "PCM_24", 1e-6)],
)
def test_bit_depths_and_formats_are_read(tmp_path, name, subtype, atol):
    data = _ramp(441) * 0.5
    path = _write(tmp_path / name, data, 44100, subtype=subtype)
    wav, sr = read_audio_mono(path)
    assert sr == 44100 and wav.dtype == np.float32
    np.testing.assert_allclose(wav, data, atol=atol)
    assert any(str(path).endswith(ext) for ext in AUDIO_EXTENSIONS)


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nope.wav"
    for fn in (read_audio_mono, probe_audio, lambda p: load_audio(p, 16000)):
        with pytest.raises(AudioReadError, match="not found.*nope.wav"):
            fn(path)


def test_empty_file_raises(tmp_path):
    path = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    for fn in (read_audio_mono, probe_audio):
        with pytest.raises(AudioReadError, match="Empty.*empty.wav"):
            fn(path)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioReadError, match="zero.wav"):
        read_audio_mono(zero_bytes)


def test_corrupt_file_raises(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for fn in (read_audio_mono, probe_audio):
        with pytest.raises(AudioReadError, match="corrupt.*corrupt.wav"):
            fn(path)


def test_silent_file_loads_as_zeros(tmp_path):
    path = _write(tmp_path / "silence.wav", np.zeros((4000, 2)), 16000)
    wav = load_audio(path, 16000, duration=0.5)
    assert wav.shape == (8000,) and torch.count_nonzero(wav) == 0


def test_non_finite_samples_become_zero(tmp_path):
    data = np.array([0.1, np.nan, np.inf, -np.inf, 0.2], dtype=np.float32)
    path = _write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    wav = load_audio(path, 16000)
    assert torch.isfinite(wav).all()
    assert wav.tolist() == pytest.approx([0.1, 0.0, 0.0, 0.0, 0.2])
