"""Sound events and acoustic scenes of the toy world, and the zero-shot class lists.

Sounds are procedural events (a dog bark is a short harmonic burst with a
pitch drop, a siren a slow FM tone, ...). Every event repeats its pattern so
that any 1-2 s window holds evidence of it, because training uses random 2 s
crops. Acoustic scenes (TUT) are mixtures of 2-3 characteristic events.

``EVENTS`` maps an event key to its synthesiser and its vocabulary (the
phrases captions use, see :mod:`dataset.toy.captions`); ``SCENES`` maps a
scene key to its events and place names. ``ESC50_CLASSES``,
``US8K_CLASSES`` and ``TUT_SCENES`` are the labels of the three zero-shot sets.

Example
-------
>>> from dataset.toy.signals import stream
>>> x = EVENTS["siren"]["synth"](16000, 16000, stream(0, "doc"))
>>> x.shape, round(float(np.sqrt(np.mean(x * x))), 6)
((16000,), 1.0)
"""

import numpy as np

from dataset.toy.signals import (
    _attack,
    _decay,
    _fade,
    _harmonic,
    _noise,
    _overlay,
    _phase,
    _rms_normalise,
    _stft_filter,
)

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


def _voice(n, sr, rng, f0_range, syllable_rate, pause_p, excursion, shout_p):
    """One voice: syllables with vowel formants, as a harmonic source through a formant filter.

    The filter is applied frame by frame (``_stft_filter``), which is far
    cheaper than per-harmonic time-varying gains.
    """
    frame_len = 1 << int(round(np.log2(0.032 * sr)))  # noqa: RUF046 (numpy < 2 rounds scalars to floats)
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
