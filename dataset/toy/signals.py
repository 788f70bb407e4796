"""Signal helpers of the toy world: seeded random streams, shaped noise, wavetable
harmonics, envelopes and a short-time Fourier filter.

Every random decision of the toy world comes from :func:`stream`, a generator
seeded by ``(seed, purpose, file key)``, never from a shared stream, so the
bytes of a file do not depend on how many other files were drawn before it
(or on the number of worker processes).

The underscored helpers are shared by the modules of ``dataset.toy`` and are
not part of its public API.
"""

import zlib

import numpy as np

# ---------------------------------------------------------------------------
# Random streams
# ---------------------------------------------------------------------------


def stream(seed, *key):
    """A generator seeded by ``seed`` and a key (strings/ints), independent of any other draw.

    Arguments
    ---------
    seed : int
        World seed.
    *key : str or int
        What the draws are for (purpose, set, file index, ...).

    Returns
    -------
    numpy.random.Generator

    Example
    -------
    >>> a = stream(0, "audio", "esc50", 3).random()
    >>> b = stream(0, "audio", "esc50", 3).random()
    >>> a == b, a == stream(1, "audio", "esc50", 3).random()
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


def _spectral_power(spec, m):
    """Mean power of the length-``m`` real signal whose rfft is ``spec`` (Parseval)."""
    energy = 2 * np.sum(spec.real ** 2 + spec.imag ** 2) - abs(spec[0]) ** 2
    return energy / m ** 2
