"""A deterministic synthetic "toy world" written in the real dataset layouts.

Public datasets and checkpoints cannot be downloaded on the build machines, so
this module writes a small world that the preparers, the tests and the
one-command demo pipeline consume exactly as they would the real data:

- ``clotho/``: a captioned corpus in the Clotho v2 layout (clean, dry audio);
- ``pairs.csv``: the development + validation pairs as ``ID,wav_path,caption``;
- ``unpaired/`` + ``unpaired_paths.txt``: an unpaired pool (AudioSet's role);
- ``ESC-50/``, ``UrbanSound8K/``, ``TUT2017/``: the three zero-shot sets;
- ``world.json``: class lists, counts and the recording-condition parameters.

Sounds are procedural events (a dog bark is a short harmonic burst with a
pitch drop, a siren a slow FM tone, ...). Every clip repeats its events'
patterns so that any 1-2 s window holds evidence of every event it is
labelled or captioned with, because training uses random 2 s crops. Captions
come from templates with synonyms, and the zero-shot label words occur in
them, so prompts such as "this is a sound of church bells" are meaningful.
Acoustic scenes (TUT) are mixtures of 2-3 characteristic events; some
captioned clips are such mixtures with the scene words in their captions.

The paper's question needs a domain shift: the captioned corpus is clean and
dry, while the unpaired pool and all three target sets share one "field
recording" condition (room reverb, brown noise + mains hum, band-limiting
tilt EQ). See ``CONDITION``.

Determinism: every random decision comes from a generator seeded by
``(seed, purpose, file key)``, never from a shared stream, so the bytes of a
file do not depend on how many other files were drawn before it (or on the
number of worker processes). Rows are written in sorted order and nothing
records a time stamp: the same seed gives the same bytes.

Simplifications, all for speed: TUT clips are 4 s long (10 s in the real
set), Clotho clips 3-6 s (15-30 s); audio is synthesised at 16 kHz (the rate
the demo models listen at, so content stops at 8 kHz) and upsampled to each
file's rate; the reverb is circular (a tail running past the end of a clip
wraps to its start, as if the repeating sound had been going on before).
The unpaired pool is named like downloaded AudioSet clips (``Y<YouTube id>.wav``).

Usage
-----
``python -m dataset.toy_world OUT [--size tiny|demo] [--seed N] [--workers K]``
"""

import argparse
import csv
import functools
import json
import math
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

from dataset.manifest import atomic_write, write_csv

FORMAT_VERSION = 1

# Sizes: counts per set. "tiny" feeds the unit tests (seconds), "demo" the
# one-command pipeline (enough data to train a small CLAP in minutes).
SIZES = {
    "tiny": {
        "clotho": {"development": 72, "validation": 12, "evaluation": 12},
        "clotho_scene_fraction": 0.25,
        "unpaired": 96,
        "unpaired_scene_fraction": 0.25,
        "esc50_per_class_per_fold": 2,
        "us8k_per_class_per_fold": 1,
        "tut_dev_locations_per_scene": 4,
        "tut_dev_clips_per_location": 1,
        "tut_eval_locations_per_scene": 1,
        "tut_eval_clips_per_location": 2,
    },
    "demo": {
        "clotho": {"development": 360, "validation": 60, "evaluation": 60},
        "clotho_scene_fraction": 0.25,
        "unpaired": 500,
        "unpaired_scene_fraction": 0.25,
        "esc50_per_class_per_fold": 4,
        "us8k_per_class_per_fold": 3,
        "tut_dev_locations_per_scene": 6,
        "tut_dev_clips_per_location": 3,
        "tut_eval_locations_per_scene": 2,
        "tut_eval_clips_per_location": 3,
    },
}

# Durations (seconds) and formats. Clotho is 15-30 s in reality; the toy keeps
# clips short so that the demo trains in minutes.
CLOTHO_SR = 44100
CLOTHO_SECONDS = (3.0, 6.0)
UNPAIRED_SR = 32000
UNPAIRED_SECONDS = (4.0, 10.0)
ESC50_SR = 44100
ESC50_SECONDS = 5.0
US8K_SECONDS_MAX = 4.0
US8K_SHORT_SECONDS = 0.3
TUT_SR = 44100
TUT_SECONDS = 4.0  # the real clips are 10 s long
# Events and the condition are synthesised at this rate, then upsampled to each file's rate.
SYNTH_SR = 16000

# The shared "field recording" condition of the unpaired pool and the three
# target sets. Ranges are drawn per clip; everything else is fixed, so the
# condition is one recognisable acoustic signature.
CONDITION = {
    "name": "field_recording",
    "reverb": "exponentially decaying Gaussian noise impulse response after a direct path",
    "reverb_rt60_s": [0.6, 0.9],
    "reverb_predelay_ms": 8.0,
    "reverb_direct_to_reverberant_db": [-3.0, 1.0],
    "background": "brown noise (1/f^2 power above the corner) added to the reverberant sound",
    "background_corner_hz": 20.0,
    "background_snr_db": [8.0, 14.0],
    "hum_fundamental_hz": 50.0,
    "hum_harmonic_levels_db": [0.0, -4.0, -8.0, -12.0, -16.0],
    "hum_level_db": -18.0,
    "eq_lowpass_hz": 5000.0,
    "eq_lowpass_order": 2,
    "eq_tilt_db_per_octave": -2.0,
    "eq_tilt_pivot_hz": 500.0,
    "order": "reverb -> + background -> EQ -> + hum (electrical, after the microphone)",
}

# Clean clips get a faint pink noise floor at this SNR (dB), as a quiet studio has.
CLEAN_FLOOR_SNR_DB = (40.0, 50.0)

# Output level (dBFS RMS) drawn per clip, for clean and shifted clips alike.
LEVEL_DBFS = (-26.0, -18.0)


# ---------------------------------------------------------------------------
# Random streams
# ---------------------------------------------------------------------------


def _stream(seed, *key):
    """A generator seeded by ``seed`` and a key (strings/ints), independent of any other draw.

    Example
    -------
    >>> a = _stream(0, "audio", "esc50", 3).random()
    >>> b = _stream(0, "audio", "esc50", 3).random()
    >>> a == b, a == _stream(1, "audio", "esc50", 3).random()
    (True, False)
    """
    # crc32 is stable across processes and Python versions (str hash is not).
    words = [int(seed)] + [zlib.crc32(str(k).encode("utf-8")) for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


# ---------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------


def _fast_len(n):
    """Smallest 2^a 3^b 5^c >= n (pocketfft is slow on large prime factors)."""
    best = 1 << max(int(n - 1).bit_length(), 0)
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _rms_normalise(x):
    rms = np.sqrt(np.mean(x * x))
    return x / rms if rms > 0 else x


def _overlay(out, grain, start):
    """Adds ``grain`` into ``out`` at sample ``start`` (may hang over either edge)."""
    a = max(start, 0)
    b = min(start + len(grain), len(out))
    if b > a:
        out[a:b] += grain[a - start:b - start]


def _noise(n, sr, rng, lo=None, hi=None, order=2, tilt_db_oct=0.0):
    """Gaussian noise shaped by Butterworth-like magnitude masks in the frequency domain.

    Arguments
    ---------
    n : int
        Number of samples.
    sr : int
        Sample rate.
    rng : numpy.random.Generator
        Source of randomness.
    lo, hi : float, optional
        High-pass / low-pass corners in Hz.
    order : int
        Slope of both masks (6 dB/octave per order).
    tilt_db_oct : float
        Spectral slope in dB per octave (pivot 1 kHz).

    Returns
    -------
    numpy.ndarray
        ``n`` samples with unit RMS.
    """
    m = _fast_len(max(n, 16))
    return _rms_normalise(np.fft.irfft(_noise_spectrum(m, sr, rng, lo, hi, order, tilt_db_oct), m)[:n])


def _noise_spectrum(m, sr, rng, lo=None, hi=None, order=2, tilt_db_oct=0.0):
    """The rfft of shaped Gaussian noise of length ``m``, drawn directly in the frequency domain.

    The rfft of white Gaussian noise has independent complex Gaussian bins, so
    drawing them saves a forward FFT per noise.
    """
    gain = _noise_gain(m, sr, lo, hi, order, tilt_db_oct)
    draws = rng.standard_normal((2, len(gain)))
    return (draws[0] + 1j * draws[1]) * gain


_GAINS = {}


def _noise_gain(m, sr, lo, hi, order, tilt_db_oct):
    """Magnitude mask of ``_noise_spectrum`` (cached: the powers are slow and the same
    lengths and bands recur within a clip)."""
    key = (m, sr, lo, hi, order, tilt_db_oct)
    if key not in _GAINS:
        if len(_GAINS) > 256:
            _GAINS.clear()
        f = np.fft.rfftfreq(m, 1.0 / sr)
        f[0] = f[1]
        gain = np.ones_like(f)
        if lo:
            gain /= np.sqrt(1.0 + (lo / f) ** (2 * order))
        if hi:
            gain /= np.sqrt(1.0 + (f / hi) ** (2 * order))
        if tilt_db_oct:
            gain *= (f / 1000.0) ** (tilt_db_oct / 6.0206)
        gain[0] = 0.0  # no DC offset
        _GAINS[key] = gain
    return _GAINS[key]


_TABLE_SIZE = 2048
_BASIS = {}


def _table_basis(count):
    """Rows ``sin(k x)`` and ``cos(k x)``, k = 1..count, over one wavetable period (cached)."""
    have = _BASIS.get("count", 0)
    if count > have:
        have = max(count, 2 * have, 64)
        k = np.arange(1, have + 1)[:, None]
        grid = 2 * np.pi * np.arange(_TABLE_SIZE)[None, :] / _TABLE_SIZE
        _BASIS.update(count=have, sin=np.sin(k * grid), cos=np.cos(k * grid))
    return _BASIS["sin"], _BASIS["cos"]


def _harmonic(phase, amps, f0_max, sr, phases=None):
    """Sum of ``amps[k-1] * sin(k * phase + phases[k-1])`` over harmonics below 0.45 * sr.

    Wavetable synthesis: one period is summed once and read with linear
    interpolation, so the cost does not grow with the number of harmonics
    (the interpolation error stays below -50 dB for the harmonics used here).

    Example
    -------
    >>> ph = np.linspace(0, 20, 1000)
    >>> bool(np.allclose(_harmonic(ph, [1.0, 0.5], 100.0, 16000), np.sin(ph) + 0.5 * np.sin(2 * ph), atol=1e-3))
    True
    """
    count = 0
    while count < len(amps) and (count + 1) * f0_max < 0.45 * sr:
        count += 1
    # Weighted sums by broadcasting, not ``@``: BLAS threads spin and crawl on a
    # busy machine, and these products are small.
    table = np.zeros(_TABLE_SIZE + 1)
    if count:
        sin_basis, cos_basis = _table_basis(count)
        a = np.asarray(amps[:count], dtype=float)
        if phases is None:
            table[:-1] = np.sum(a[:, None] * sin_basis[:count], axis=0)
        else:
            ph = np.asarray(phases[:count], dtype=float)
            # sin(kx + p) = sin(kx) cos(p) + cos(kx) sin(p)
            table[:-1] = np.sum((a * np.cos(ph))[:, None] * sin_basis[:count]
                                + (a * np.sin(ph))[:, None] * cos_basis[:count], axis=0)
    table[-1] = table[0]
    # In-place steps: this lookup is the inner loop of most events.
    u = phase * (1.0 / (2 * np.pi))
    u -= np.floor(u)
    u *= _TABLE_SIZE
    i = u.astype(np.intp)
    lo = table.take(i)
    hi = table.take(i + 1)
    u -= i
    hi -= lo
    hi *= u
    hi += lo
    return hi


def _phase(f0, sr):
    """Instantaneous phase of a frequency track (Hz per sample)."""
    return 2 * np.pi * np.cumsum(f0) / sr


def _decay(n, sr, tau):
    return np.exp(-np.arange(n) / (sr * tau))


def _attack(n, sr, seconds):
    """A linear fade-in of ``seconds`` (clicks at grain onsets would add fake broadband energy)."""
    return np.minimum(1.0, np.arange(n) / max(1.0, seconds * sr))


def _fade(n, sr, attack, release):
    """Linear fade-in and fade-out."""
    return _attack(n, sr, attack) * _attack(n, sr, release)[::-1]


# ---------------------------------------------------------------------------
# Procedural events: each is ``synth(n, sr, rng) -> unit-RMS float64 array``.
# Patterns start before t = 0 (clips begin mid-pattern) and never leave a gap
# longer than ~0.5 s, so every 1 s window contains the event.
# ---------------------------------------------------------------------------


def _bark_grain(sr, rng, f0):
    d = rng.uniform(0.10, 0.18)
    n = int(d * sr)
    t = np.arange(n) / sr
    track = f0 * (1.0 - 0.35 * t / d)  # barks fall in pitch
    amps = [1.0 / k * (1.6 if 2 <= k <= 4 else 1.0) for k in range(1, 13)]
    tone = _harmonic(_phase(track, sr), amps, track.max(), sr)
    noisy = 0.35 * _noise(n, sr, rng, 500, 3000)
    env = _attack(n, sr, 0.008) * np.exp(-t / (d / 2.5))
    return (tone / np.abs(tone).max() + noisy) * env


def synth_dog(n, sr, rng):
    """Groups of 1-3 barks: short harmonic bursts (f0 380-600 Hz) with a pitch drop."""
    out = np.zeros(n)
    f0 = rng.uniform(380, 600)
    grains = [_bark_grain(sr, rng, f0 * rng.uniform(0.92, 1.08)) for _ in range(3)]
    t = -rng.uniform(0, 0.8)
    while t < n / sr:
        for _ in range(rng.integers(1, 4)):
            _overlay(out, grains[rng.integers(3)], int(t * sr))
            t += rng.uniform(0.17, 0.25)
        t += rng.uniform(0.15, 0.4)
    return _rms_normalise(out)


def synth_chirping_birds(n, sr, rng):
    """Trains of fast FM chirps between 2 and 6 kHz, one or two birds."""
    out = np.zeros(n)
    birds = [(rng.uniform(2600, 4200), rng.choice([-1.0, 1.0]) * rng.uniform(800, 1800))
             for _ in range(rng.integers(1, 3))]
    for b, (fs, sweep) in enumerate(birds):
        grains = []
        for _ in range(4):
            g = int(rng.uniform(0.03, 0.07) * sr)
            u = np.arange(g) / g
            trill = 150 * np.sin(2 * np.pi * rng.uniform(30, 60) * np.arange(g) / sr)
            track = fs * rng.uniform(0.93, 1.07) + sweep * u + trill
            grains.append(_harmonic(_phase(track, sr), [1.0, 0.15], track.max(), sr)
                          * np.sin(np.pi * u) ** 2)
        level = 1.0 if b == 0 else rng.uniform(0.4, 0.8)
        t = -rng.uniform(0, 0.6)
        while t < n / sr:
            for _ in range(rng.integers(3, 8)):
                _overlay(out, level * grains[rng.integers(4)], int(t * sr))
                t += rng.uniform(0.07, 0.12)
            t += rng.uniform(0.1, 0.35)
    return _rms_normalise(out)


def synth_siren(n, sr, rng):
    """A continuous tone sweeping slowly (0.8-1.6 s period) between ~400 and ~1300 Hz."""
    t = np.arange(n) / sr
    fc, dev, period = rng.uniform(650, 950), rng.uniform(200, 350), rng.uniform(0.8, 1.6)
    track = fc + dev * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return _rms_normalise(_harmonic(_phase(track, sr), [1.0, 0.5, 0.3, 0.15], fc + dev, sr))


def synth_engine(n, sr, rng):
    """A low harmonic hum (f0 70-110 Hz) with firing-rate amplitude modulation and rumble."""
    t = np.arange(n) / sr
    f0 = rng.uniform(70, 110)
    track = f0 * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    amps = [k ** -0.8 * rng.uniform(0.6, 1.2) for k in range(1, 31)]
    hum = _rms_normalise(_harmonic(_phase(track, sr), amps, f0 * 1.01, sr, rng.uniform(0, 6.3, 30)))
    am = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(6, 14) * t)
    return _rms_normalise(hum * am + 0.4 * _noise(n, sr, rng, 30, 400))


def synth_rain(n, sr, rng):
    """Broadband hiss plus dense random drop clicks (decaying 1.5-6 kHz sinusoids)."""
    out = 0.6 * _noise(n, sr, rng, 400, 10000, tilt_db_oct=-1.0)
    drops = []
    for _ in range(8):
        g = int(rng.uniform(0.004, 0.012) * sr)
        drops.append(np.sin(2 * np.pi * rng.uniform(1500, 6000) * np.arange(g) / sr)
                     * _decay(g, sr, g / sr / 4))
    drops_out = np.zeros(n)
    rate = rng.uniform(25, 60)
    t = -0.02
    while t < n / sr:
        _overlay(drops_out, drops[rng.integers(8)] * rng.lognormal(0, 0.5), int(t * sr))
        t += rng.exponential(1 / rate)
    return _rms_normalise(out + _rms_normalise(drops_out))


_BELL_RATIOS = [0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.1]
_BELL_AMPS = [0.6, 1.0, 0.7, 0.5, 0.6, 0.35, 0.3, 0.25, 0.15]


def synth_church_bells(n, sr, rng):
    """Strikes every 0.6-0.9 s of two bells with inharmonic, slowly decaying partials."""
    out = np.zeros(n)
    g = int(1.8 * sr)
    bells = []
    base = rng.uniform(250, 450)
    for f in (base, base * 1.26):
        tt = np.arange(g) / sr
        strike = np.zeros(g)
        for r, a in zip(_BELL_RATIOS, _BELL_AMPS):
            if f * r < 0.45 * sr:
                strike += a * np.sin(2 * np.pi * f * r * tt + rng.uniform(0, 6.3)) \
                    * np.exp(-tt / (rng.uniform(1.0, 1.6) / r ** 0.7))
        bells.append(strike * _attack(g, sr, 0.002))
    t = -rng.uniform(0, 1.5)
    i = 0
    while t < n / sr:
        _overlay(out, bells[i % 2] * rng.uniform(0.8, 1.0), int(t * sr))
        i += 1
        t += rng.uniform(0.6, 0.9)
    return _rms_normalise(out)


def synth_clapping(n, sr, rng):
    """Steady hand claps (2.5-4.5 per second): 10-20 ms band-pass noise bursts."""
    out = np.zeros(n)
    grains = []
    for _ in range(4):
        g = int(rng.uniform(0.010, 0.020) * sr)
        grains.append(_noise(g, sr, rng, 700, 5000) * _decay(g, sr, 0.004) * _attack(g, sr, 0.0005))
    period = rng.uniform(0.22, 0.4)
    t = -rng.uniform(0, period)
    while t < n / sr:
        _overlay(out, grains[rng.integers(4)] * rng.uniform(0.7, 1.0), int(t * sr))
        t += period * rng.uniform(0.92, 1.08)
    return _rms_normalise(out)


def synth_crying_baby(n, sr, rng):
    """Cries of 0.5-0.9 s (f0 380-520 Hz, rise-fall contour, vibrato) between short breaths."""
    out = np.zeros(n)
    f0b = rng.uniform(380, 520)
    t = -rng.uniform(0, 0.8)
    while t < n / sr:
        d = rng.uniform(0.5, 0.9)
        g = int(d * sr)
        u = np.arange(g) / g
        track = f0b * rng.uniform(0.9, 1.1) * (1 + 0.18 * np.sin(np.pi * u)) \
            * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(5, 8) * np.arange(g) / sr))
        amps = [1.0 / k + (0.6 if 2 <= k <= 3 else 0.0) + (0.25 if 6 <= k <= 7 else 0.0)
                for k in range(1, 15)]
        cry = _harmonic(_phase(track, sr), amps, track.max(), sr) * _fade(g, sr, 0.04, 0.08)
        _overlay(out, cry, int(t * sr))
        t += d + rng.uniform(0.12, 0.3)
    return _rms_normalise(out)


def synth_clock_alarm(n, sr, rng):
    """Square-wave beeps (1.8-2.6 kHz): four 70 ms beeps, then a short pause."""
    out = np.zeros(n)
    f = rng.uniform(1800, 2600)
    g = int(0.07 * sr)
    phase = 2 * np.pi * f * np.arange(g) / sr
    beep = _harmonic(phase, [1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7], f, sr) * _fade(g, sr, 0.002, 0.002)
    t = -rng.uniform(0, 0.8)
    while t < n / sr:
        for _ in range(4):
            _overlay(out, beep, int(t * sr))
            t += 0.13
        t += rng.uniform(0.2, 0.35)
    return _rms_normalise(out)


def synth_footsteps(n, sr, rng):
    """Steps every 0.45-0.6 s: a low damped thud plus a grainy gravel crunch."""
    out = np.zeros(n)
    grains = []
    for _ in range(4):
        g = int(0.12 * sr)
        tt = np.arange(g) / sr
        thud = np.sin(2 * np.pi * rng.uniform(70, 120) * tt) * np.exp(-tt / 0.025)
        crunch = _noise(g, sr, rng, 600, 4000) * np.exp(-tt / 0.03) \
            * (rng.random(g // 64 + 1).repeat(64)[:g] > 0.4)
        grains.append((thud + 0.7 * crunch) * _attack(g, sr, 0.002))
    period = rng.uniform(0.45, 0.6)
    t = -rng.uniform(0, period)
    while t < n / sr:
        _overlay(out, grains[rng.integers(4)] * rng.uniform(0.7, 1.0), int(t * sr))
        t += period * rng.uniform(0.92, 1.08)
    return _rms_normalise(out)


def synth_car_horn(n, sr, rng):
    """Honks of 0.25-0.6 s: two buzzy tones a major third apart (f0 380-450 Hz)."""
    out = np.zeros(n)
    f1 = rng.uniform(380, 450)
    amps = [1.0 / k * (1.8 if 5 <= k <= 7 else 1.0) for k in range(1, 13)]
    t = -rng.uniform(0, 0.8)
    while t < n / sr:
        for _ in range(rng.integers(1, 3)):
            d = rng.uniform(0.25, 0.6)
            g = int(d * sr)
            tt = np.arange(g) / sr
            honk = sum(_harmonic(2 * np.pi * f * tt, amps, f, sr) for f in (f1, f1 * 1.26))
            _overlay(out, honk * _fade(g, sr, 0.01, 0.02), int(t * sr))
            t += d + 0.1
        t += rng.uniform(0.15, 0.35)
    return _rms_normalise(out)


_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [570, 840, 2410],
                    [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690]], dtype=float)


def _stft_filter(x, gains, frame_len):
    """Filters ``x`` with a time-varying magnitude response (one row of ``gains`` per hop).

    Short-time Fourier analysis/synthesis with square-root periodic Hann
    windows and a hop of half a frame (the squared windows then sum to 1).
    Frame ``j`` is centred on sample ``j * hop - frame_len // 2``.
    """
    hop = frame_len // 2
    n = len(x)
    count = gains.shape[0]
    total = (count + 2) * hop + frame_len
    # Single precision halves the cost of the framed FFTs; the result is summed
    # into a float64 mixture and quantised to 16/24 bits later.
    xp = np.zeros(total, dtype=np.float32)
    xp[frame_len:frame_len + n] = x
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_len) / frame_len)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(xp, frame_len)[::hop][:count] * window
    frames = np.fft.irfft(np.fft.rfft(frames, axis=1) * gains, frame_len, axis=1) * window
    yp = np.zeros(total, dtype=np.float32)
    for r in range(2):  # frames r, r+2, ... do not overlap: add them as one block
        block = frames[r::2].ravel()
        yp[r * hop:r * hop + len(block)] += block
    return yp[frame_len:frame_len + n].astype(np.float64)


def _voice(n, sr, rng, f0_range, syllable_rate, pause_p, excursion, shout_p):
    """One voice: syllables with vowel formants, as a harmonic source through a formant filter.

    The filter is applied frame by frame (``_stft_filter``), which is far
    cheaper than per-harmonic time-varying gains.
    """
    frame_len = 1 << int(round(np.log2(0.032 * sr)))
    hop = frame_len // 2
    count = (n + frame_len) // hop + 2
    frame = hop / sr
    centres = (np.arange(count) * hop - frame_len // 2) / sr
    f0 = np.full(count, np.mean(f0_range))
    amp = np.zeros(count)
    formants = np.tile(_VOWELS[0], (count, 1))
    t = centres[0] - rng.uniform(0, 0.5)
    while t < centres[-1]:
        if rng.random() < pause_p:
            t += rng.uniform(0.12, 0.3)
            continue
        d = rng.uniform(0.6, 1.4) / syllable_rate
        pitch, level = rng.uniform(*f0_range), 1.0
        if rng.random() < shout_p:
            pitch, level, d = pitch * 1.35, 1.8, d * 1.8
        a = max(int(np.ceil((t - centres[0]) / frame)), 0)
        b = min(int((t + d - centres[0]) / frame) + 1, count)
        if b > a:
            u = (centres[a:b] - t) / d
            amp[a:b] = level * np.sin(np.pi * np.clip(u, 0, 1)) ** 0.7
            f0[a:b] = pitch * (1 + excursion * (0.5 - u))
            formants[a:b] = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.93, 1.07)
        t += d
    f0_s = np.interp(np.arange(n) / sr, centres, f0)
    # Harmonics above ~4 kHz would be filtered away anyway: not synthesising them saves time.
    amps = [1.0 / k ** 0.7 for k in range(1, int(4000 / f0_range[0]) + 1)]
    source = _harmonic(_phase(f0_s, sr), amps, f0.max(), sr) + 0.05 * rng.standard_normal(n)
    bins = np.fft.rfftfreq(frame_len, 1.0 / sr).astype(np.float32)
    widths = np.array([90.0, 110.0, 160.0], dtype=np.float32)
    gains = np.zeros((count, len(bins)), dtype=np.float32)
    formants = formants.astype(np.float32)
    for i in range(3):
        gains += 1.0 / (1.0 + np.square((bins[None, :] - formants[:, i:i + 1]) / widths[i]))
    gains *= amp[:, None].astype(np.float32) / (1.0 + (bins / 3500.0) ** 4)
    return _stft_filter(source, gains, frame_len)


def synth_talking(n, sr, rng):
    """Babble of 2-3 adult voices (f0 95-230 Hz, 4-6 syllables per second)."""
    out = np.zeros(n)
    for _ in range(rng.integers(2, 4)):
        lo = rng.uniform(95, 180)
        out += rng.uniform(0.6, 1.0) * _rms_normalise(
            _voice(n, sr, rng, (lo, lo * 1.3), rng.uniform(4, 6), 0.12, 0.15, 0.0))
    return _rms_normalise(out)


def synth_children_playing(n, sr, rng):
    """2-3 high voices (f0 260-460 Hz) with wide pitch glides and frequent shouts."""
    out = np.zeros(n)
    for _ in range(rng.integers(2, 4)):
        lo = rng.uniform(260, 330)
        out += rng.uniform(0.6, 1.0) * _rms_normalise(
            _voice(n, sr, rng, (lo, lo * 1.4), rng.uniform(3, 5), 0.1, 0.5, 0.3))
    return _rms_normalise(out)


def synth_drilling(n, sr, rng):
    """A buzzy whine (f0 180-320 Hz, energy around 2-4 kHz) in 1-2 s runs with spin-ups."""
    out = np.zeros(n)
    f0 = rng.uniform(180, 320)
    centre = rng.uniform(2000, 4000)
    amps = [np.exp(-0.5 * (np.log2(k * f0 / centre) / 0.6) ** 2) + 0.3 / k for k in range(1, 40)]
    t = -rng.uniform(0, 1.5)
    while t < n / sr:
        d = rng.uniform(1.0, 2.0)
        g = int(d * sr)
        tt = np.arange(g) / sr
        track = f0 * (1 - 0.4 * np.exp(-tt / 0.08)) * (1 + 0.02 * np.sin(2 * np.pi * 3 * tt))
        run = _harmonic(_phase(track, sr), amps, f0, sr) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(30, 50) * tt))
        _overlay(out, _rms_normalise(run) * _fade(g, sr, 0.02, 0.03), int(t * sr))
        t += d + rng.uniform(0.1, 0.25)
    return _rms_normalise(out + 0.15 * _noise(n, sr, rng, 1000, 6000))


def synth_jackhammer(n, sr, rng):
    """Rapid impacts (14-22 per second) with a metallic ring, in 0.8-1.6 s bursts."""
    out = np.zeros(n)
    grains = []
    ring = rng.uniform(1800, 3000)
    for _ in range(4):
        g = int(0.03 * sr)
        tt = np.arange(g) / sr
        grains.append(_noise(g, sr, rng, 200, 8000) * np.exp(-tt / 0.006)
                      + 0.8 * np.sin(2 * np.pi * ring * tt) * np.exp(-tt / 0.012)
                      + 0.8 * np.sin(2 * np.pi * rng.uniform(60, 100) * tt) * np.exp(-tt / 0.02))
    rate = rng.uniform(14, 22)
    t = -rng.uniform(0, 1.0)
    while t < n / sr:
        end = t + rng.uniform(0.8, 1.6)
        while t < end:
            _overlay(out, grains[rng.integers(4)] * rng.uniform(0.8, 1.0), int(t * sr))
            t += 1 / rate * rng.uniform(0.95, 1.05)
        t += rng.uniform(0.1, 0.3)
    return _rms_normalise(out)


_PENTATONIC = np.array([0, 2, 4, 7, 9, 12, 14, 16])


def synth_street_music(n, sr, rng):
    """A plucked pentatonic melody over a bass note on every other beat."""
    out = np.zeros(n)
    base = rng.uniform(220, 330)
    beat = rng.uniform(0.2, 0.3)
    decay = rng.uniform(0.15, 0.4)
    amps = [1.0 / k ** 1.5 for k in range(1, 9)]
    t = -rng.uniform(0, 2 * beat)
    i = 0
    while t < n / sr:
        d = beat * rng.integers(1, 3)
        f = base * 2 ** (_PENTATONIC[rng.integers(len(_PENTATONIC))] / 12)
        g = int((d + 0.2) * sr)
        tt = np.arange(g) / sr
        note = _harmonic(2 * np.pi * f * tt, amps, f, sr) * np.exp(-tt / decay) * _attack(g, sr, 0.003)
        _overlay(out, note, int(t * sr))
        if i % 2 == 0:
            bass = np.sin(2 * np.pi * base / 2 * tt) * np.exp(-tt / 0.3) * _attack(g, sr, 0.005)
            _overlay(out, 0.7 * bass, int(t * sr))
        t += d
        i += 1
    return _rms_normalise(out)


def synth_sea_waves(n, sr, rng):
    """Broadband surf whose level swells with a 2.5-4 s period (never below ~35 %)."""
    t = np.arange(n) / sr
    period = rng.uniform(2.5, 4.0)
    swell = (0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 6.3))) ** 1.5
    body = _noise(n, sr, rng, 150, 6000, tilt_db_oct=-1.0) * (0.35 + 0.65 * swell)
    foam_swell = np.roll(swell, int(0.3 * sr)) ** 2
    foam = _noise(n, sr, rng, 2000, 9000) * foam_swell
    return _rms_normalise(body + 0.5 * foam)


def synth_wind(n, sr, rng):
    """Low-passed noise swelling slowly (gusts of 1.5-4 s) with a faint whistle."""
    t = np.arange(n) / sr
    gust = np.zeros(n)
    for _ in range(3):
        gust += np.sin(2 * np.pi * t / rng.uniform(1.5, 4.0) + rng.uniform(0, 6.3))
    gust = 0.45 + 0.55 * (gust - gust.min()) / max(np.ptp(gust), 1e-9)
    # Steep low-pass: wind is a rumble, unlike the broadband surf of ``sea_waves``.
    rumble = _noise(n, sr, rng, 40, rng.uniform(250, 500), order=4) * gust
    wf = rng.uniform(500, 900) * (1 + 0.15 * np.sin(2 * np.pi * t / rng.uniform(2, 4)))
    whistle = np.sin(_phase(wf, sr)) * gust ** 3
    return _rms_normalise(rumble + 0.25 * whistle)


def synth_dishes(n, sr, rng):
    """Clinks of cutlery and glasses: short inharmonic partials at 2-6 kHz, 2-8 per second."""
    out = np.zeros(n)
    grains = []
    for _ in range(6):
        g = int(0.25 * sr)
        tt = np.arange(g) / sr
        clink = np.zeros(g)
        for _ in range(4):
            clink += rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * rng.uniform(2000, 6000) * tt) \
                * np.exp(-tt / rng.uniform(0.04, 0.15))
        grains.append(clink * _attack(g, sr, 0.0005))
    t = -rng.uniform(0, 0.4)
    while t < n / sr:
        _overlay(out, grains[rng.integers(6)] * rng.uniform(0.5, 1.0), int(t * sr))
        t += rng.uniform(0.12, 0.45)
    return _rms_normalise(out + 0.1 * _noise(n, sr, rng, 1500, 6000))


# ---------------------------------------------------------------------------
# Vocabulary: canonical captions contain every target label of the event;
# the others are synonyms. ``nouns`` feed "the sound of ..." templates.
# ---------------------------------------------------------------------------

EVENTS = {
    "dog": {
        "synth": synth_dog, "title": "Dog barking", "keywords": "dog;bark;animal",
        "canonical": ["a dog bark rings out again and again", "a dog bark echoes repeatedly"],
        "clauses": ["a dog barks", "a dog is barking loudly", "a small dog barks repeatedly",
                    "a dog yaps", "a dog barks and growls"],
        "nouns": ["a barking dog", "dogs barking", "a dog bark", "a yapping dog"],
    },
    "rain": {
        "synth": synth_rain, "title": "Rain", "keywords": "rain;weather;drops",
        "canonical": ["rain falls steadily", "rain patters on the ground"],
        "clauses": ["rain is falling", "it is raining heavily", "raindrops patter on the roof",
                    "a heavy shower pours down"],
        "nouns": ["falling rain", "heavy rain", "raindrops", "a rain shower"],
    },
    "chirping_birds": {
        "synth": synth_chirping_birds, "title": "Birds chirping", "keywords": "birds;chirp;nature",
        "canonical": ["chirping birds sing", "chirping birds call to each other"],
        "clauses": ["birds chirp", "birds are chirping", "small birds tweet", "a bird sings rapidly",
                    "birds twitter"],
        "nouns": ["chirping birds", "birdsong", "tweeting birds", "bird calls"],
    },
    "crying_baby": {
        "synth": synth_crying_baby, "title": "Baby crying", "keywords": "baby;cry;infant",
        "canonical": ["a crying baby wails", "a crying baby sobs loudly"],
        "clauses": ["a baby cries", "a baby is crying loudly", "an infant wails",
                    "a baby sobs and screams"],
        "nouns": ["a crying baby", "a baby's cries", "an infant crying"],
    },
    "clapping": {
        "synth": synth_clapping, "title": "Hands clapping", "keywords": "clap;hands;applause",
        "canonical": ["someone is clapping their hands", "clapping hands keep a steady rhythm"],
        "clauses": ["a person claps", "someone claps their hands", "hands clap steadily",
                    "a person is applauding"],
        "nouns": ["clapping", "hand claps", "steady applause"],
    },
    "footsteps": {
        "synth": synth_footsteps, "title": "Footsteps gravel", "keywords": "footsteps;walking;gravel",
        "canonical": ["footsteps walk past", "footsteps approach steadily"],
        "clauses": ["someone walks by", "a person walks on gravel", "steps crunch on the ground",
                    "a person is walking"],
        "nouns": ["footsteps", "steps on gravel", "walking footsteps"],
    },
    "clock_alarm": {
        "synth": synth_clock_alarm, "title": "Alarm clock", "keywords": "alarm;clock;beep",
        "canonical": ["a clock alarm beeps", "a clock alarm keeps ringing"],
        "clauses": ["an alarm clock beeps", "an alarm is beeping", "a digital alarm beeps repeatedly",
                    "an alarm clock goes off"],
        "nouns": ["a beeping alarm", "an alarm clock", "electronic beeps", "a clock alarm"],
    },
    "siren": {
        "synth": synth_siren, "title": "Siren passing", "keywords": "siren;emergency;traffic",
        "canonical": ["a siren wails", "a loud siren rises and falls"],
        "clauses": ["a siren is blaring", "an emergency vehicle sounds its siren",
                    "a police siren howls", "an ambulance wails"],
        "nouns": ["a wailing siren", "an ambulance siren", "a siren"],
    },
    "engine": {
        "synth": synth_engine, "title": "Engine idle", "keywords": "engine;motor;idle",
        "canonical": ["an engine idling rumbles", "an engine idling hums steadily"],
        "clauses": ["an engine hums", "an engine is running", "a motor idles",
                    "an engine rumbles at low speed"],
        "nouns": ["an idling engine", "a running motor", "engine noise", "an engine idling"],
    },
    "church_bells": {
        "synth": synth_church_bells, "title": "Church bells", "keywords": "bells;church;ringing",
        "canonical": ["church bells ring", "church bells toll"],
        "clauses": ["bells ring", "a church bell tolls", "large bells are ringing", "bells chime"],
        "nouns": ["ringing bells", "church bells", "a tolling bell"],
    },
    "car_horn": {
        "synth": synth_car_horn, "title": "Car horn", "keywords": "car;horn;honk",
        "canonical": ["a car horn honks", "a car horn blares"],
        "clauses": ["a car honks", "a horn honks repeatedly", "a driver blows the horn",
                    "a car beeps its horn"],
        "nouns": ["a honking horn", "car horns", "a car horn"],
    },
    "children_playing": {
        "synth": synth_children_playing, "title": "Kids playing", "keywords": "children;kids;playground",
        "canonical": ["children playing shout and laugh", "children playing scream happily"],
        "clauses": ["children shout and laugh", "kids are playing", "children scream and play",
                    "kids laugh and yell"],
        "nouns": ["children playing", "playing kids", "children's voices"],
    },
    "drilling": {
        "synth": synth_drilling, "title": "Drill", "keywords": "drill;power tool;construction",
        "canonical": ["drilling whines loudly", "loud drilling goes on and off"],
        "clauses": ["a drill whines", "a power drill is running", "someone drills into a wall",
                    "an electric drill buzzes"],
        "nouns": ["a whining drill", "drilling", "an electric drill"],
    },
    "jackhammer": {
        "synth": synth_jackhammer, "title": "Jackhammer", "keywords": "jackhammer;construction;road",
        "canonical": ["a jackhammer pounds the pavement", "a jackhammer rattles"],
        "clauses": ["a pneumatic hammer rattles", "a jackhammer is breaking concrete",
                    "a jackhammer hammers rapidly", "road works hammer away"],
        "nouns": ["a jackhammer", "pneumatic hammering", "rattling hammering"],
    },
    "street_music": {
        "synth": synth_street_music, "title": "Street musician", "keywords": "music;street;busker",
        "canonical": ["street music plays", "a busker plays street music"],
        "clauses": ["a musician plays a tune", "music is played on the street",
                    "a street performer plays a melody", "a melody is played outdoors"],
        "nouns": ["street music", "a melody", "music from a street performer"],
    },
    "sea_waves": {
        "synth": synth_sea_waves, "title": "Sea waves", "keywords": "sea;waves;surf",
        "canonical": ["sea waves crash", "sea waves roll in"],
        "clauses": ["waves crash", "waves break on the shore", "the surf rolls in",
                    "water surges and recedes"],
        "nouns": ["crashing waves", "sea waves", "the surf"],
    },
    "wind": {
        "synth": synth_wind, "title": "Wind", "keywords": "wind;gust;weather",
        "canonical": ["wind blows", "the wind howls"],
        "clauses": ["wind is blowing strongly", "a gusty wind howls", "the wind gusts",
                    "air rushes past"],
        "nouns": ["blowing wind", "gusts of wind", "the wind"],
    },
    "talking": {
        "synth": synth_talking, "title": "People talking", "keywords": "people;talking;voices",
        "canonical": ["people are talking", "people talk and chatter"],
        "clauses": ["people chat", "several people converse", "a crowd murmurs",
                    "a few people have a conversation"],
        "nouns": ["people talking", "chatter", "conversation", "murmuring voices"],
    },
    "dishes": {
        "synth": synth_dishes, "title": "Dishes clinking", "keywords": "dishes;cutlery;kitchen",
        "canonical": ["dishes clink", "dishes and cutlery clatter"],
        "clauses": ["cutlery clatters", "plates and glasses clink", "dishes rattle",
                    "glasses clink together"],
        "nouns": ["clinking dishes", "clattering cutlery", "clinking glasses"],
    },
}
EVENT_KEYS = sorted(EVENTS)

# Acoustic scenes: ``events`` always sound, ``optional`` with probability 1/2.
# ``places[0]`` contains the prompt label ("cafe/restaurant" -> "cafe restaurant").
SCENES = {
    "beach": {
        "events": ["sea_waves", "wind"], "optional": ["children_playing"],
        "places": ["on the beach", "at the beach", "by the sea", "on a sandy beach"],
        "names": ["a beach", "a windy beach", "the seaside"],
    },
    "bus": {
        "events": ["engine", "talking"], "optional": ["clock_alarm"],
        "places": ["on a bus", "inside a bus", "on a city bus", "aboard a moving bus"],
        "names": ["a bus ride", "a moving bus", "a crowded bus"],
    },
    "cafe/restaurant": {
        "events": ["talking", "dishes"], "optional": ["street_music"],
        "places": ["in a cafe restaurant", "in a busy cafe", "inside a restaurant", "at a cafe"],
        "names": ["a cafe", "a busy restaurant", "a cafe restaurant"],
    },
    "city_center": {
        "events": ["car_horn", "footsteps"], "optional": ["siren"],
        "places": ["in the city center", "in a busy city center", "downtown", "on a busy street in town"],
        "names": ["a city center", "a busy downtown street", "a town square"],
    },
    "forest_path": {
        "events": ["chirping_birds", "footsteps"], "optional": ["wind"],
        "places": ["along a forest path", "on a forest path", "in the woods", "on a trail through the forest"],
        "names": ["a forest path", "a walk in the forest", "a quiet woodland trail"],
    },
    "park": {
        "events": ["chirping_birds", "children_playing"], "optional": ["dog"],
        "places": ["in a park", "at the park", "in the park", "in a city park"],
        "names": ["a park", "a quiet park", "a city park"],
    },
}
SCENE_KEYS = sorted(SCENES)

# Zero-shot class lists. ESC-50 targets follow the relative order of the real
# ESC-50 numbering (dog 0, rain 10, ..., church_bells 46), which is not
# alphabetical, so code that sorts labels instead of using ``target`` fails.
ESC50_CLASSES = ["dog", "rain", "chirping_birds", "crying_baby", "clapping", "footsteps",
                 "clock_alarm", "siren", "engine", "church_bells"]
ESC10 = {"dog", "rain", "crying_baby"}  # members of the real ESC-10 subset
US8K_CLASSES = sorted(["car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                       "jackhammer", "siren", "street_music"])  # classID = alphabetical index
US8K_EVENT = {"car_horn": "car_horn", "children_playing": "children_playing", "dog_bark": "dog",
              "drilling": "drilling", "engine_idling": "engine", "jackhammer": "jackhammer",
              "siren": "siren", "street_music": "street_music"}
TUT_SCENES = SCENE_KEYS

_SINGLE_TEMPLATES = ["{C}", "{C} {adv}", "the sound of {N}", "{N} can be heard {adv}",
                     "{N} is heard", "in this recording, {C}"]
_PAIR_TEMPLATES = ["{C1} while {C2}", "{C1} and {C2}", "{C1}, and {C2} in the background",
                   "{N1} and {N2} can be heard", "{N1} mixed with {N2}",
                   "the sound of {N1} together with {N2}", "{C1} as {C2}"]
_SCENE_TEMPLATES = ["{C1} {place}", "{C1} while {C2} {place}", "{C1} and {C2} {place}",
                    "{scene} with {N1} and {N2}", "ambience of {scene}, with {N1}",
                    "{N1} and {N2} {place}", "{place}, {C1}"]
_ADVERBS = ["nearby", "in the distance", "outside", "for a while", "close to the microphone",
            "over and over"]


def _sentence(text):
    """Clotho style: capitalised, one final period."""
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."


def make_captions(events, scene, rng, count=5):
    """``count`` distinct template captions for a clip.

    One caption (at a random position) is canonical: it contains every target
    label of the clip's events (or the scene's label), so each label of the
    zero-shot sets is a phrase the caption corpus uses.

    Arguments
    ---------
    events : list of str
        Keys of ``EVENTS`` that sound in the clip (1-3).
    scene : str or None
        Key of ``SCENES`` if the clip is a scene mixture.
    rng : numpy.random.Generator
        Source of randomness.
    count : int
        Number of captions.

    Returns
    -------
    list of str

    Example
    -------
    >>> caps = make_captions(["dog", "rain"], None, _stream(0, "doc"))
    >>> len(caps), len(set(caps)), any("dog bark" in c.lower() for c in caps)
    (5, 5, True)
    """
    def pick(options):
        return options[rng.integers(len(options))]

    def clause(e, canonical):
        return pick(EVENTS[e]["canonical"] if canonical else EVENTS[e]["clauses"] + EVENTS[e]["canonical"])

    def noun(e):
        return pick(EVENTS[e]["nouns"])

    canonical_slot = int(rng.integers(count))
    captions = []
    for _ in range(200 * count):
        canonical = len(captions) == canonical_slot
        mentioned = list(events)
        if len(mentioned) > 2:  # captions name at most two of a scene's events
            mentioned = [mentioned[i] for i in sorted(rng.choice(len(mentioned), 2, replace=False))]
        if rng.random() < 0.5 and len(mentioned) == 2:
            mentioned = mentioned[::-1]
        if scene is not None:
            info = SCENES[scene]
            # The canonical caption must name the place with the scene label.
            template = pick([t for t in _SCENE_TEMPLATES if "{place}" in t] if canonical else _SCENE_TEMPLATES)
            fields = {"C1": clause(mentioned[0], False), "C2": clause(mentioned[1], False),
                      "N1": noun(mentioned[0]), "N2": noun(mentioned[1]),
                      "place": info["places"][0] if canonical else pick(info["places"]),
                      "scene": pick(info["names"])}
        elif len(mentioned) == 1:
            e = mentioned[0]
            template = "{C}" if canonical else pick(_SINGLE_TEMPLATES)
            fields = {"C": clause(e, canonical), "N": noun(e), "adv": pick(_ADVERBS)}
        else:
            template = pick(_PAIR_TEMPLATES[:3] + [_PAIR_TEMPLATES[6]]) if canonical else pick(_PAIR_TEMPLATES)
            fields = {"C1": clause(mentioned[0], canonical), "C2": clause(mentioned[1], canonical),
                      "N1": noun(mentioned[0]), "N2": noun(mentioned[1])}
        text = _sentence(template.format(**fields))
        if text not in captions:
            captions.append(text)
            if len(captions) == count:
                return captions
    raise RuntimeError(f"could not draw {count} distinct captions for {events} / {scene}")


def caption_events(caption):
    """The events a toy caption names: keys of ``EVENTS`` whose phrases it contains.

    Captions are built from each event's clauses and nouns (see
    :func:`make_captions`), so a phrase match recovers them; the demo pipeline
    uses it to measure how often a curated pair's caption names an event of
    its clip.

    Example
    -------
    >>> caption_events("A dog barks while rain is falling.")
    ['dog', 'rain']
    >>> caption_events("Nothing to hear.")
    []
    """
    text = " ".join(caption.lower().replace(".", " ").replace(",", " ").split())
    return [e for e in EVENT_KEYS if any(_phrase_in(p, text) for p in _event_phrases(e))]


@functools.lru_cache(maxsize=None)
def _event_phrases(event):
    info = EVENTS[event]
    return tuple(" ".join(p.lower().replace(",", " ").split()) for p in info["canonical"] + info["clauses"] + info["nouns"])


def _phrase_in(phrase, text):
    return f" {phrase} " in f" {text} "


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _eq_response(f):
    """Magnitude response of the condition's microphone/recorder EQ."""
    c = CONDITION
    lowpass = 1.0 / np.sqrt(1.0 + (f / c["eq_lowpass_hz"]) ** (2 * c["eq_lowpass_order"]))
    octaves = np.log2(np.maximum(f, c["eq_tilt_pivot_hz"]) / c["eq_tilt_pivot_hz"])
    return lowpass * 10 ** (c["eq_tilt_db_per_octave"] * octaves / 20)


_SHAPES = {}


def _condition_shapes(m, sr):
    """Frequencies, EQ response and brown-noise shape for an rfft of length ``m`` (cached:
    clips of one set share a few lengths)."""
    if (m, sr) not in _SHAPES:
        if len(_SHAPES) > 64:
            _SHAPES.clear()
        f = np.fft.rfftfreq(m, 1.0 / sr)
        brown = 1.0 / np.maximum(f, CONDITION["background_corner_hz"])
        brown[0] = 0.0
        _SHAPES[(m, sr)] = (f, _eq_response(f), brown)
    return _SHAPES[(m, sr)]


def _spectral_power(spec, m):
    """Mean power of the length-``m`` real signal whose rfft is ``spec`` (Parseval)."""
    energy = 2 * np.sum(spec.real ** 2 + spec.imag ** 2) - abs(spec[0]) ** 2
    return energy / m ** 2


def _condition_spectra(dry_spec, m, sr, rng, channels):
    """Reverb, background noise and EQ applied to the rfft of a length-``m`` signal.

    The reverb is a *circular* convolution: the tail that runs past the end
    of the clip wraps to its start, as if the (repeating) sound had been going
    on before the clip began. That saves the zero-padded FFTs of a linear
    convolution and makes the condition one multiplication per channel.

    Returns
    -------
    list of numpy.ndarray
        One conditioned spectrum per channel (without the hum, which is added
        at the output rate).
    """
    c = CONDITION
    f, eq, brown_shape = _condition_shapes(m, sr)
    rt60 = rng.uniform(*c["reverb_rt60_s"])
    ir_len = int(rt60 * sr)
    predelay = int(c["reverb_predelay_ms"] * 1e-3 * sr)
    spectra = []
    for _ in range(channels):
        # Each channel has its own impulse response and noise, as two spaced
        # microphones in one room would.
        tail = rng.standard_normal(ir_len) * np.exp(-6.9078 * np.arange(ir_len) / (rt60 * sr))
        drr = 10 ** (rng.uniform(*c["reverb_direct_to_reverberant_db"]) / 10)
        # Fold the tail onto the clip length (short clips wrap it several times).
        ir = np.bincount((predelay + 1 + np.arange(ir_len)) % m,
                         tail / np.sqrt(np.sum(tail ** 2) * drr), minlength=m)
        ir[0] += 1.0
        wet = dry_spec * np.fft.rfft(ir)
        noise = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) * brown_shape
        snr = 10 ** (rng.uniform(*c["background_snr_db"]) / 10)
        noise *= np.sqrt(_spectral_power(wet, m) / snr / _spectral_power(noise, m))
        spectra.append((wet + noise) * eq)
    return spectra


def _hum(n, sr, rng):
    """Unit-RMS mains hum (fundamental + harmonics) of ``n`` samples."""
    c = CONDITION
    period = sr / c["hum_fundamental_hz"]
    # The hum is periodic: synthesise one period and tile it when that is a whole number
    # of samples (true for every rate used here), otherwise the whole signal.
    length = int(period) if period == int(period) else n
    t = np.arange(length) / sr
    cycle = np.zeros(length)
    for k, db in enumerate(c["hum_harmonic_levels_db"], start=1):
        cycle += 10 ** (db / 20) * np.sin(2 * np.pi * c["hum_fundamental_hz"] * k * t + rng.uniform(0, 6.3))
    return np.tile(_rms_normalise(cycle), -(-n // length))[:n]


def _add_hum(x, sr, rng):
    """Adds the hum to ``x`` ``[n, channels]`` in place, ``hum_level_db`` below each channel's RMS."""
    hum = _hum(len(x), sr, rng)
    for ch in range(x.shape[1]):
        rms = np.sqrt(np.mean(np.square(x[:, ch])))
        x[:, ch] += hum * (rms * 10 ** (CONDITION["hum_level_db"] / 20))
    return x


def apply_condition(dry, sr, rng, channels=1):
    """Puts a clean mono signal into the shared "field recording" condition.

    Order: reverb (decaying-noise impulse response), + brown background noise
    at a drawn SNR, microphone EQ (low-pass and high-frequency tilt), + mains
    hum (electrical, after the microphone). See ``CONDITION``.

    Arguments
    ---------
    dry : numpy.ndarray
        Clean mono signal ``[n]``.
    sr : int
        Sample rate.
    rng : numpy.random.Generator
        Source of randomness.
    channels : int
        Number of output channels.

    Returns
    -------
    numpy.ndarray
        ``[n, channels]``, not level-normalised.

    Example
    -------
    >>> x = apply_condition(np.sin(np.arange(8000) * 0.3), 8000, _stream(0, "doc"), 2)
    >>> x.shape
    (8000, 2)
    """
    n = len(dry)
    spectra = _condition_spectra(np.fft.rfft(dry), n, sr, rng, channels)
    return _add_hum(np.stack([np.fft.irfft(s, n) for s in spectra], axis=1), sr, rng)


def _synthesis_grid(n, sr):
    """Internal length, output length and margins for synthesising ``n`` samples at ``sr``.

    Audio is synthesised at ``SYNTH_SR`` and upsampled by zero-padding its
    spectrum, which needs internal and output lengths in the ratio of the two
    rates; both are chosen 7-smooth so the FFTs stay fast. The margins keep
    the wrap-around of the circular upsampling away from the kept samples.
    """
    g = math.gcd(sr, SYNTH_SR)
    a, b = SYNTH_SR // g, sr // g
    pad = a * -(-160 // a)  # >= 10 ms at 16 kHz and a multiple of ``a``
    need = -(-n * a // b) + 2 * pad
    q = _fast_len(-(-need // a))
    return a * q, b * q, pad * b // a


def _to_output_rate(spec, m_int, m_out, start, n):
    """Samples ``start:start + n`` of the length-``m_out`` signal band-limited-upsampled from
    the rfft ``spec`` of a length-``m_int`` signal."""
    # Single precision: the output is 16/24-bit PCM anyway, and the inverse
    # FFT at the output rate is the most expensive step of a clip (~3x faster).
    padded = np.zeros(m_out // 2 + 1, dtype=np.complex64)
    k = min(len(spec), len(padded))
    padded[:k] = spec[:k] * (m_out / m_int)
    return np.fft.irfft(padded, m_out)[start:start + n]


def render_clip(spec, seed):
    """Synthesises one clip from its spec (events, scene, format, condition).

    Events and the recording condition are synthesised at ``SYNTH_SR``
    (16 kHz, the rate the demo models listen at; content stops at 8 kHz),
    then upsampled to the file's rate in the same frequency-domain pass as
    the condition, which keeps even the demo world fast to write.

    Arguments
    ---------
    spec : dict
        ``key`` (tuple, the file's random-stream key), ``sr``, ``seconds``,
        ``channels``, ``events`` (list of event keys), ``scene`` (or None),
        ``shifted`` (bool).
    seed : int
        World seed.

    Returns
    -------
    numpy.ndarray
        ``[n, channels]`` float64 in [-1, 1].

    Example
    -------
    >>> spec = {"key": ("doc", 0), "sr": 44100, "seconds": 1.0, "channels": 1,
    ...         "events": ["siren"], "scene": None, "shifted": False}
    >>> render_clip(spec, 0).shape
    (44100, 1)
    """
    rng = _stream(seed, "audio", *spec["key"])
    sr = spec["sr"]
    n = int(round(spec["seconds"] * sr))
    m_int, m_out, pad_out = _synthesis_grid(n, sr)
    mix = np.zeros(m_int)
    for i, e in enumerate(spec["events"]):
        # The first event leads a plain clip; scene events are all of similar level.
        gain_db = rng.uniform(-6, 0) if spec["scene"] else (0.0 if i == 0 else rng.uniform(-8, -2))
        mix += 10 ** (gain_db / 20) * EVENTS[e]["synth"](m_int, SYNTH_SR, rng)
    mix_spec = np.fft.rfft(mix)
    if not spec["shifted"]:
        # Real "clean" recordings are never digitally silent: a faint pink floor
        # keeps empty bands out of the log-mel floor (1e-10), so the domain
        # shift is about the condition, not about exact zeros.
        floor = _noise_spectrum(m_int, SYNTH_SR, rng, 20, None, 1, tilt_db_oct=-3.0)
        floor_snr = 10 ** (rng.uniform(*CLEAN_FLOOR_SNR_DB) / 10)
        mix_spec = mix_spec + floor * np.sqrt(_spectral_power(mix_spec, m_int) / floor_snr
                                              / _spectral_power(floor, m_int))
    if spec["shifted"]:
        spectra = _condition_spectra(mix_spec, m_int, SYNTH_SR, rng, spec["channels"])
    else:
        spectra = [mix_spec]
    out = np.empty((n, len(spectra)))
    for ch, s in enumerate(spectra):
        out[:, ch] = _to_output_rate(s, m_int, m_out, pad_out, n)
    if spec["shifted"]:
        out = _add_hum(out, sr, rng)
    if out.shape[1] != spec["channels"]:
        out = np.repeat(out, spec["channels"], axis=1)
    level = 10 ** (rng.uniform(*LEVEL_DBFS) / 20)
    out *= level / max(np.sqrt(np.mean(out * out)), 1e-12)
    peak = np.abs(out).max()
    if peak > 0.98:
        out *= 0.98 / peak
    return out


def _write_wav(path, audio, sr, subtype):
    """Writes a WAV atomically (no time stamps or other varying chunks)."""
    atomic_write(path, lambda f: sf.write(f, audio, sr, subtype=subtype, format="WAV"), "wb")


def _render_and_write(job):
    spec, seed = job
    _write_wav(spec["path"], render_clip(spec, seed), spec["sr"], spec["subtype"])
    return spec["path"]


# ---------------------------------------------------------------------------
# Planning: every set is described (names, labels, formats) before any audio
# is rendered, with decisions drawn from per-clip streams.
# ---------------------------------------------------------------------------


def _event_plan(seed, name, index, n_events_round):
    """Events of the ``index``-th plain clip: the first round cycles single events, so each
    event has at least one single-event clip; later rounds add a second event half the time."""
    rng = _stream(seed, "plan", name, index)
    first = EVENT_KEYS[index % len(EVENT_KEYS)]
    if index < n_events_round or rng.random() < 0.5:
        return [first]
    others = [e for e in EVENT_KEYS if e != first]
    return [first, others[rng.integers(len(others))]]


def _scene_plan(seed, name, index, scene):
    rng = _stream(seed, "plan", name, index)
    info = SCENES[scene]
    return list(info["events"]) + [e for e in info["optional"] if rng.random() < 0.5]


def _mixed_plan(seed, name, count, scene_fraction):
    """(events, scene) per clip: ``scene_fraction`` scene mixtures (cycling scenes), the rest plain."""
    n_scene = int(round(count * scene_fraction))
    plans = []
    for i in range(count):
        if i < n_scene:
            scene = SCENE_KEYS[i % len(SCENE_KEYS)]
            plans.append((_scene_plan(seed, name, i, scene), scene))
        else:
            plans.append((_event_plan(seed, name, i - n_scene, len(EVENT_KEYS)), None))
    return plans


_NON_ASCII_PLACES = ["Café", "Zürich", "São Paulo", "Straße", "Córdoba", "Århus", "Malmö", "Niño"]
_USERS = ["field_rec", "soundhunter", "José_Ramón", "audio-lab", "birdnerd", "Amélie", "klanggarten"]
_LICENSES = ["http://creativecommons.org/licenses/by/3.0/",
             "http://creativecommons.org/publicdomain/zero/1.0/",
             "http://creativecommons.org/licenses/by-nc/3.0/"]


def _clotho_name(index, events, scene, rng):
    """Clotho-like file names; some carry spaces, commas, parentheses and non-ASCII letters."""
    if scene is not None:
        base = f"{scene.replace('/', ' and ').replace('_', ' ').capitalize()} ambience"
    else:
        base = " with ".join(EVENTS[e]["title"] if i == 0 else EVENTS[e]["title"].lower()
                             for i, e in enumerate(events))
    place = _NON_ASCII_PLACES[rng.integers(len(_NON_ASCII_PLACES))]
    style = index % 6
    if style == 1:
        return f"{base}, take {index}.wav"
    if style == 3:
        return f"{base} ({place}) {index:03d}.wav"
    if style == 5:
        return f"{place} - {base.lower()} {index}.wav"
    return f"{base} {index:03d}.wav"


def _unique_ids(seed, name, count, low=10000, high=600000):
    """Distinct fake Freesound ids for a set (sorted draws keep them stable)."""
    rng = _stream(seed, "ids", name)
    return [int(x) for x in rng.choice(np.arange(low, high), size=count, replace=False)]


def _plan_clotho(out, seed, cfg):
    root = os.path.join(out, "clotho")
    clips, captions, metadata = {}, {}, {}
    ids = _unique_ids(seed, "clotho", sum(cfg["clotho"].values()), 20000, 500000)
    id_pos = 0
    for split in ("development", "validation", "evaluation"):
        count = cfg["clotho"][split]
        plans = _mixed_plan(seed, f"clotho-{split}", count, cfg["clotho_scene_fraction"])
        rows, meta_rows, specs = [], [], []
        for i, (events, scene) in enumerate(plans):
            rng = _stream(seed, "names", split, i)
            file_name = _clotho_name(i, events, scene, rng)
            seconds = round(float(rng.uniform(*CLOTHO_SECONDS)), 3)
            caps = make_captions(events, scene, _stream(seed, "captions", split, i))
            sound_id = ids[id_pos]
            id_pos += 1
            user = _USERS[rng.integers(len(_USERS))]
            start = int(rng.integers(0, 20)) * CLOTHO_SR
            keywords = ";".join(dict.fromkeys(
                w for e in events for w in EVENTS[e]["keywords"].split(";")))
            if scene is not None:
                keywords = scene.replace("/", ";").replace("_", " ") + ";" + keywords
            specs.append({"key": ("clotho", split, i), "path": os.path.join(root, split, file_name),
                          "sr": CLOTHO_SR, "seconds": seconds, "channels": 1, "subtype": "PCM_16",
                          "events": events, "scene": scene, "shifted": False})
            row = {"file_name": file_name}
            row.update({f"caption_{k + 1}": c for k, c in enumerate(caps)})
            rows.append(row)
            meta_rows.append({
                "file_name": file_name, "keywords": keywords, "sound_id": sound_id,
                "sound_link": f"https://freesound.org/people/{user}/sounds/{sound_id}/",
                "start_end_samples": f"[{start}, {start + int(round(seconds * CLOTHO_SR))}]",
                "manufacturer": user, "license": _LICENSES[rng.integers(len(_LICENSES))]})
        names = [r["file_name"] for r in rows]
        if len(set(names)) != len(names):
            raise RuntimeError(f"duplicate Clotho file names in {split}")
        clips[split] = sorted(specs, key=lambda s: s["path"])
        captions[split] = sorted(rows, key=lambda r: r["file_name"])
        metadata[split] = sorted(meta_rows, key=lambda r: r["file_name"])
    return clips, captions, metadata


_YT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _plan_unpaired(out, seed, cfg):
    specs = []
    plans = _mixed_plan(seed, "unpaired", cfg["unpaired"], cfg["unpaired_scene_fraction"])
    for i, (events, scene) in enumerate(plans):
        rng = _stream(seed, "names", "unpaired", i)
        ytid = "".join(_YT_ALPHABET[j] for j in rng.integers(0, 64, 11))
        seconds = round(float(rng.uniform(*UNPAIRED_SECONDS)), 3)
        specs.append({"key": ("unpaired", i), "path": os.path.join(out, "unpaired", f"Y{ytid}.wav"),
                      "sr": UNPAIRED_SR, "seconds": seconds, "channels": 1, "subtype": "PCM_16",
                      "events": events, "scene": scene, "shifted": True})
    if len({s["path"] for s in specs}) != len(specs):
        raise RuntimeError("duplicate unpaired file names; change the seed")
    return sorted(specs, key=lambda s: s["path"])


def _plan_esc50(out, seed, cfg):
    root = os.path.join(out, "ESC-50")
    per = cfg["esc50_per_class_per_fold"]
    ids = _unique_ids(seed, "esc50", 5 * len(ESC50_CLASSES) * per, 10000, 300000)
    specs, rows = [], []
    id_pos = 0
    for fold in range(1, 6):
        for target, category in enumerate(ESC50_CLASSES):
            src, take = None, "A"
            for j in range(per):
                rng = _stream(seed, "plan", "esc50", fold, target, j)
                # Like the real set, some recordings give several takes (A, B, ...), all in one fold.
                if src is not None and rng.random() < 0.5:
                    take = chr(ord(take) + 1)
                else:
                    src, take = ids[id_pos], "A"
                    id_pos += 1
                filename = f"{fold}-{src}-{take}-{target}.wav"
                specs.append({"key": ("esc50", fold, target, j), "path": os.path.join(root, "audio", filename),
                              "sr": ESC50_SR, "seconds": ESC50_SECONDS, "channels": 1, "subtype": "PCM_16",
                              "events": [category], "scene": None, "shifted": True})
                rows.append({"filename": filename, "fold": fold, "target": target, "category": category,
                             "esc10": "True" if category in ESC10 else "False", "src_file": src,
                             "take": take})
    return sorted(specs, key=lambda s: s["path"]), sorted(rows, key=lambda r: r["filename"])


# UrbanSound8K formats cycle with co-prime periods so every size mixes sample
# rates, channel counts and bit depths (the real set has all of them).
_US8K_RATES = [44100, 48000, 22050]
_US8K_CHANNELS = [2, 1]
_US8K_SUBTYPES = ["PCM_16", "PCM_24", "PCM_16", "PCM_16", "PCM_24"]


def _plan_us8k(out, seed, cfg):
    root = os.path.join(out, "UrbanSound8K")
    per = cfg["us8k_per_class_per_fold"]
    ids = _unique_ids(seed, "us8k", 10 * len(US8K_CLASSES) * per, 10000, 200000)
    specs, rows = [], []
    g = 0
    for fold in range(1, 11):
        for class_id, name in enumerate(US8K_CLASSES):
            for j in range(per):
                rng = _stream(seed, "plan", "us8k", fold, class_id, j)
                fs_id = ids[g]
                if g % 9 == 4:
                    seconds = US8K_SHORT_SECONDS  # the real set has clips of a fraction of a second
                elif rng.random() < 0.6:
                    seconds = US8K_SECONDS_MAX
                else:
                    seconds = round(float(rng.uniform(1.0, US8K_SECONDS_MAX)), 6)
                occurrence, slice_idx = int(rng.integers(0, 3)), int(rng.integers(0, 40))
                start = round(slice_idx * 2.0 + float(rng.uniform(0, 2)), 6)
                sr = _US8K_RATES[g % 3]
                filename = f"{fs_id}-{class_id}-{occurrence}-{slice_idx}.wav"
                specs.append({"key": ("us8k", fold, class_id, j),
                              "path": os.path.join(root, "audio", f"fold{fold}", filename),
                              "sr": sr, "seconds": seconds, "channels": _US8K_CHANNELS[(g // 3) % 2],
                              "subtype": _US8K_SUBTYPES[g % 5], "events": [US8K_EVENT[name]],
                              "scene": None, "shifted": True})
                rows.append({"slice_file_name": filename, "fsID": fs_id, "start": start,
                             "end": round(start + seconds, 6), "salience": int(rng.integers(1, 3)),
                             "fold": fold, "classID": class_id, "class": name})
                g += 1
    return sorted(specs, key=lambda s: s["path"]), sorted(rows, key=lambda r: r["slice_file_name"])


def _plan_tut(out, seed, cfg):
    root = os.path.join(out, "TUT2017")
    dev_root = os.path.join(root, "TUT-acoustic-scenes-2017-development")
    eval_root = os.path.join(root, "TUT-acoustic-scenes-2017-evaluation")
    specs, dev_rows, eval_rows = [], [], []
    for s, scene in enumerate(SCENE_KEYS):
        for loc in range(cfg["tut_dev_locations_per_scene"]):
            location = f"{'ab'[loc % 2]}{s * 20 + loc + 1:03d}"
            for k in range(cfg["tut_dev_clips_per_location"]):
                start = int(_stream(seed, "plan", "tut-dev-offset", scene, loc).integers(0, 20)) * 4 + k * 4
                name = f"audio/{location}_{start}_{start + int(TUT_SECONDS)}.wav"
                events = _scene_plan(seed, "tut-dev", f"{scene}-{loc}-{k}", scene)
                specs.append({"key": ("tut-dev", scene, loc, k), "path": os.path.join(dev_root, name),
                              "sr": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                              "events": events, "scene": scene, "shifted": True})
                # Locations rotate over the four folds, so each location is evaluated in exactly one.
                dev_rows.append({"file": name, "scene": scene, "location": location,
                                 "fold": loc % 4 + 1})
        for loc in range(cfg["tut_eval_locations_per_scene"]):
            location = f"{'ab'[loc % 2]}{200 + s * 20 + loc + 1:03d}"
            for k in range(cfg["tut_eval_clips_per_location"]):
                original = f"audio/{location}_{k * 4}_{k * 4 + int(TUT_SECONDS)}.wav"
                events = _scene_plan(seed, "tut-eval", f"{scene}-{loc}-{k}", scene)
                eval_rows.append({"original": original, "scene": scene, "events": events,
                                  "key": ("tut-eval", scene, loc, k)})
    # The evaluation set hides locations behind numbered names (audio/1.wav, ...).
    order = _stream(seed, "plan", "tut-eval-order").permutation(len(eval_rows))
    for number, idx in enumerate(order, start=1):
        row = eval_rows[idx]
        row["file"] = f"audio/{number}.wav"
        specs.append({"key": row["key"], "path": os.path.join(eval_root, row["file"]),
                      "sr": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                      "events": row["events"], "scene": row["scene"], "shifted": True})
    dev_rows.sort(key=lambda r: r["file"])
    eval_rows.sort(key=lambda r: int(r["file"][len("audio/"):-len(".wav")]))
    return sorted(specs, key=lambda s: s["path"]), dev_rows, eval_rows, dev_root, eval_root


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _write_text(path, lines, encoding="utf-8"):
    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in lines)), "w",
                 encoding=encoding, newline="")


def _write_tsv(path, rows):
    _write_text(path, ["\t".join(str(v) for v in row) for row in rows])


def _write_dataset_csv(path, rows, fieldnames, encoding="utf-8"):
    """A metadata CSV of a public dataset: ``\\n`` line ends, as in the real files
    (``write_csv`` writes the csv module's ``\\r\\n``, fine for our own manifests)."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, "w", encoding=encoding, newline="")


_OWNED = ["clotho", "unpaired", "ESC-50", "UrbanSound8K", "TUT2017", "pairs.csv",
          "unpaired_paths.txt", "unpaired_labels.csv", "world.json"]


def _prepare_out_dir(out):
    """Clears a previous toy world in ``out``; refuses to overwrite anything else."""
    present = [p for p in _OWNED if os.path.lexists(os.path.join(out, p))]
    if present and not os.path.isfile(os.path.join(out, "world.json")):
        raise FileExistsError(
            f"{out} already holds {present} but no world.json, so it does not look like a toy "
            f"world written by this module; choose an empty or new folder.")
    # world.json goes first: an interrupted clean-up must not leave a folder
    # that looks complete.
    for p in ["world.json"] + [p for p in present if p != "world.json"]:
        full = os.path.join(out, p)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        elif os.path.lexists(full):
            os.remove(full)


def _render_all(specs, seed, workers):
    jobs = [(s, seed) for s in specs]
    if workers <= 1:
        for job in jobs:
            _render_and_write(job)
        return
    # Every file has its own random stream, so the output does not depend on
    # the number of workers or on scheduling order.
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch/OpenMP threads exist
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for _ in pool.map(_render_and_write, jobs, chunksize=8):
            pass


def generate_toy_world(out_dir, size="tiny", seed=0, workers=None):
    """Writes the toy world (audio and metadata in the real layouts) under ``out_dir``.

    Arguments
    ---------
    out_dir : str
        Output folder; created if needed. A previous toy world in it is
        replaced; a non-empty folder that is not a toy world is refused.
    size : str
        ``"tiny"`` (tests, a few seconds) or ``"demo"`` (the demo pipeline).
    seed : int
        World seed (>= 0). Same seed, same bytes.
    workers : int, optional
        Processes rendering audio (default: up to 2). The output does not
        depend on it.

    Returns
    -------
    dict
        ``counts`` per set, ``paths`` of the set roots and key files, and the
        class lists.

    Example
    -------
    >>> import tempfile
    >>> summary = generate_toy_world(tempfile.mkdtemp(), "tiny", seed=0)  # doctest: +SKIP
    >>> summary["counts"]["esc50"]  # doctest: +SKIP
    100
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    cfg = SIZES[size]
    out = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out, exist_ok=True)
    _prepare_out_dir(out)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)

    clotho_clips, clotho_captions, clotho_meta = _plan_clotho(out, seed, cfg)
    unpaired = _plan_unpaired(out, seed, cfg)
    esc_specs, esc_rows = _plan_esc50(out, seed, cfg)
    us8k_specs, us8k_rows = _plan_us8k(out, seed, cfg)
    tut_specs, tut_dev, tut_eval, tut_dev_root, tut_eval_root = _plan_tut(out, seed, cfg)

    all_specs = [s for split in clotho_clips.values() for s in split] + unpaired + esc_specs \
        + us8k_specs + tut_specs
    _render_all(all_specs, seed, workers)

    # Clotho metadata.
    clotho_root = os.path.join(out, "clotho")
    caption_fields = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    meta_fields = ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples",
                   "manufacturer", "license"]
    for split in ("development", "validation", "evaluation"):
        _write_dataset_csv(os.path.join(clotho_root, f"clotho_captions_{split}.csv"),
                           clotho_captions[split], caption_fields)
        _write_dataset_csv(os.path.join(clotho_root, f"clotho_metadata_{split}.csv"),
                           clotho_meta[split], meta_fields, encoding="iso-8859-1")

    # pairs.csv: what a teacher trains on (development + validation).
    pairs = []
    for split in ("development", "validation"):
        for i, row in enumerate(clotho_captions[split]):
            wav = os.path.join(clotho_root, split, row["file_name"])
            for k in range(1, 6):
                pairs.append({"ID": f"clotho_{split}_{i:04d}_{k}", "wav_path": wav,
                              "caption": row[f"caption_{k}"]})
    write_csv(os.path.join(out, "pairs.csv"), pairs, ["ID", "wav_path", "caption"])

    # Unpaired pool.
    _write_text(os.path.join(out, "unpaired_paths.txt"), [s["path"] for s in unpaired])
    write_csv(os.path.join(out, "unpaired_labels.csv"),
              [{"wav_path": s["path"], "events": ";".join(s["events"]), "scene": s["scene"] or ""}
               for s in unpaired], ["wav_path", "events", "scene"])

    # ESC-50 and UrbanSound8K metadata.
    esc_root = os.path.join(out, "ESC-50")
    _write_dataset_csv(os.path.join(esc_root, "meta", "esc50.csv"), esc_rows,
                       ["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    us8k_root = os.path.join(out, "UrbanSound8K")
    _write_dataset_csv(os.path.join(us8k_root, "metadata", "UrbanSound8K.csv"), us8k_rows,
                       ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])

    # TUT2017: development with location-based folds, evaluation with numbered names.
    _write_tsv(os.path.join(tut_dev_root, "meta.txt"),
               [(r["file"], r["scene"], r["location"]) for r in tut_dev])
    setup = os.path.join(tut_dev_root, "evaluation_setup")
    for fold in range(1, 5):
        evaluate = [r for r in tut_dev if r["fold"] == fold]
        train = [r for r in tut_dev if r["fold"] != fold]
        _write_tsv(os.path.join(setup, f"fold{fold}_train.txt"), [(r["file"], r["scene"]) for r in train])
        _write_tsv(os.path.join(setup, f"fold{fold}_evaluate.txt"), [(r["file"], r["scene"]) for r in evaluate])
        _write_tsv(os.path.join(setup, f"fold{fold}_test.txt"), [(r["file"],) for r in evaluate])
    _write_tsv(os.path.join(tut_eval_root, "meta.txt"), [(r["file"], r["scene"]) for r in tut_eval])
    eval_setup = os.path.join(tut_eval_root, "evaluation_setup")
    _write_tsv(os.path.join(eval_setup, "test.txt"), [(r["file"],) for r in tut_eval])
    _write_tsv(os.path.join(eval_setup, "evaluate.txt"), [(r["file"], r["scene"]) for r in tut_eval])
    _write_tsv(os.path.join(eval_setup, "map.txt"), [(r["file"], r["original"]) for r in tut_eval])

    counts = {
        "clotho": {split: len(v) for split, v in clotho_clips.items()},
        "pairs": len(pairs),
        "unpaired": len(unpaired),
        "esc50": len(esc_rows),
        "us8k": len(us8k_rows),
        "tut_development": len(tut_dev),
        "tut_evaluation": len(tut_eval),
    }
    world = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "events": EVENT_KEYS,
        "scenes": {k: {"events": v["events"], "optional": v["optional"]} for k, v in SCENES.items()},
        "esc50": {"targets": {str(t): c for t, c in enumerate(ESC50_CLASSES)},
                  "esc10": sorted(ESC10)},
        "us8k": {"classes": {str(i): c for i, c in enumerate(US8K_CLASSES)},
                 "events": US8K_EVENT},
        "tut": {"scenes": TUT_SCENES},
        "counts": counts,
        "condition": CONDITION,
        "formats": {
            "clotho": {"sample_rate": CLOTHO_SR, "seconds": list(CLOTHO_SECONDS), "channels": 1, "subtype": "PCM_16",
                       "condition": "clean", "clean_floor": "pink noise",
                       "clean_floor_snr_db": list(CLEAN_FLOOR_SNR_DB)},
            "unpaired": {"sample_rate": UNPAIRED_SR, "seconds": list(UNPAIRED_SECONDS), "channels": 1,
                         "subtype": "PCM_16", "condition": CONDITION["name"]},
            "esc50": {"sample_rate": ESC50_SR, "seconds": ESC50_SECONDS, "channels": 1, "subtype": "PCM_16",
                      "condition": CONDITION["name"]},
            "us8k": {"sample_rates": sorted(set(_US8K_RATES)), "seconds_max": US8K_SECONDS_MAX,
                     "channels": sorted(set(_US8K_CHANNELS)), "subtypes": sorted(set(_US8K_SUBTYPES)),
                     "condition": CONDITION["name"]},
            "tut": {"sample_rate": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                    "condition": CONDITION["name"],
                    "note": "4 s clips instead of the real 10 s, to keep generation fast"},
        },
    }
    # world.json is written last: its presence marks a complete world. It holds
    # no absolute path, so it is identical wherever the world is written.
    atomic_write(os.path.join(out, "world.json"),
                 lambda f: f.write(json.dumps(world, indent=2, sort_keys=True) + "\n"),
                 "w", encoding="utf-8", newline="")

    return {
        "out_dir": out,
        "seed": seed,
        "size": size,
        "counts": counts,
        "paths": {
            "clotho": clotho_root,
            "pairs_csv": os.path.join(out, "pairs.csv"),
            "unpaired_dir": os.path.join(out, "unpaired"),
            "unpaired_paths": os.path.join(out, "unpaired_paths.txt"),
            "unpaired_labels": os.path.join(out, "unpaired_labels.csv"),
            "esc50": esc_root,
            "us8k": us8k_root,
            "tut": os.path.join(out, "TUT2017"),
            "world_json": os.path.join(out, "world.json"),
        },
        "esc50_classes": list(ESC50_CLASSES),
        "us8k_classes": list(US8K_CLASSES),
        "tut_scenes": list(TUT_SCENES),
    }


def _disk_size(path):
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def main(argv=None):
    """Command line: ``python -m dataset.toy_world OUT [--size tiny|demo] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m dataset.toy_world",
        description="Write a deterministic synthetic world (Clotho, unpaired pool, ESC-50, "
                    "UrbanSound8K, TUT2017 layouts) for the tests and the demo pipeline.")
    parser.add_argument("out_dir", help="output folder (a previous toy world in it is replaced)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes rendering audio (default: up to 2; the output does not depend on it)")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    try:
        summary = generate_toy_world(args.out_dir, args.size, args.seed, args.workers)
    except (FileExistsError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    c = summary["counts"]
    print(f"Toy world ({summary['size']}, seed {summary['seed']}) written to {summary['out_dir']} "
          f"in {time.perf_counter() - begin:.1f} s, {_disk_size(summary['out_dir']) / 1e6:.1f} MB")
    print(f"  Clotho: {c['clotho']['development']} development, {c['clotho']['validation']} validation, "
          f"{c['clotho']['evaluation']} evaluation clips (5 captions each); pairs.csv: {c['pairs']} rows")
    print(f"  unpaired pool: {c['unpaired']} clips -> {summary['paths']['unpaired_paths']}")
    print(f"  ESC-50: {c['esc50']} clips, {len(summary['esc50_classes'])} classes, 5 folds")
    print(f"  UrbanSound8K: {c['us8k']} clips, {len(summary['us8k_classes'])} classes, 10 folds")
    print(f"  TUT2017: {c['tut_development']} development + {c['tut_evaluation']} evaluation clips, "
          f"{len(summary['tut_scenes'])} scenes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
