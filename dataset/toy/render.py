"""Rendering of the toy world's clips: events mixed, put in their recording
condition, upsampled to the file's rate and written as WAV.

A clip is described by a *spec* (a dict made by the planners of
:mod:`dataset.toy.layouts`): its random-stream key, path, format, events,
scene and whether it is in the shifted condition. Every clip draws from its
own stream, so a file's bytes depend only on the world seed and its spec.

Audio is synthesised at 16 kHz (``SYNTH_SR``, the rate the demo models listen
at, so content stops at 8 kHz) and upsampled to each file's rate.
"""

import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

from dataset.manifest import atomic_write
from dataset.toy.conditions import CLEAN_FLOOR_SNR_DB, _add_hum, _condition_spectra
from dataset.toy.events import EVENTS
from dataset.toy.signals import _fast_len, _noise_spectrum, _spectral_power, stream

# Events and the condition are synthesised at this rate, then upsampled to each file's rate.
SYNTH_SR = 16000

# Output level (dBFS RMS) drawn per clip, for clean and shifted clips alike.
LEVEL_DBFS = (-26.0, -18.0)


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
    rng = stream(seed, "audio", *spec["key"])
    sr = spec["sr"]
    n = int(round(spec["seconds"] * sr))  # noqa: RUF046 (``seconds`` may be a numpy scalar)
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



def write_clips(specs, seed, workers=1):
    """Renders every spec (:func:`render_clip`) and writes it to ``spec["path"]``.

    Arguments
    ---------
    specs : list of dict
        Clip specs, each with ``path`` and ``subtype`` besides what
        :func:`render_clip` reads.
    seed : int
        World seed.
    workers : int
        Processes rendering audio (``<= 1``: this process). Every file has
        its own random stream, so the output does not depend on it.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> spec = {"key": ("doc", 0), "sr": 16000, "seconds": 0.5, "channels": 2, "events": ["dog"],
    ...         "scene": None, "shifted": True, "subtype": "PCM_16",
    ...         "path": os.path.join(folder.name, "dog.wav")}
    >>> write_clips([spec], seed=0)
    >>> sf.info(spec["path"]).frames, sf.info(spec["path"]).channels
    (8000, 2)
    >>> folder.cleanup()
    """
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

