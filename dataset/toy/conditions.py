"""Recording conditions of the toy world.

The paper's question needs a domain shift: the captioned corpus is clean and
dry, while the unpaired pool and all three target sets share one "field
recording" condition (room reverb, brown noise + mains hum, band-limiting
tilt EQ), described by ``CONDITION``. Clean clips only get a faint pink
noise floor (``CLEAN_FLOOR_SNR_DB``, added by :func:`dataset.toy.render.render_clip`).

The reverb is circular (a tail running past the end of a clip wraps to its
start, as if the repeating sound had been going on before).
"""

import numpy as np

from dataset.toy.signals import _rms_normalise, _spectral_power

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
    >>> from dataset.toy.signals import stream
    >>> x = apply_condition(np.sin(np.arange(8000) * 0.3), 8000, stream(0, "doc"), 2)
    >>> x.shape
    (8000, 2)
    """
    n = len(dry)
    spectra = _condition_spectra(np.fft.rfft(dry), n, sr, rng, channels)
    return _add_hum(np.stack([np.fft.irfft(s, n) for s in spectra], axis=1), sr, rng)
