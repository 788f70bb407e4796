"""Content-based leakage audit: clips of a training pool that are clips of an evaluation set.

A student trained on the unpaired pool (or on a paired set) must not have
heard the clips it is evaluated on (ESC-50, UrbanSound8K, TUT 2017). File
names and ids do not show it: a pool clip may be an evaluation clip
re-encoded with a lossy codec at another sample rate, trimmed, or renamed.
:func:`find_leaks` looks at the audio itself, with two signals.

Exact duplicates
    :func:`audio_digest` hashes the decoded samples (mono, quantised to
    16 bits), so the same samples in WAV or FLAC, under any name, give the
    same digest. :func:`audio_digests` computes them for a corpus with a
    resumable cache keyed by size and modification time.

Near duplicates
    The teacher's embeddings *propose* pairs: for each candidate clip, its
    ``top_k`` evaluation clips by cosine, kept when the cosine is at least
    ``cosine``. A second, independent signal *confirms* each pair: the
    log-mel spectrograms of the two clips (:func:`mel_signature`: 16 kHz,
    64 bands from 50 Hz to 7 kHz, 25 ms windows every 10 ms, energies
    averaged over 5 frames, log with a soft floor 60 dB below the loudest
    bin, each frame's and each band's mean removed) are aligned at the time
    offset where they agree best, and the Pearson correlation over the
    overlap (at least ``min_overlap`` seconds, each band centred over the
    overlap: :func:`aligned_correlation`) must be at least ``mel_corr``.
    Either clip may be a trimmed part of the other. At that alignment the
    samples themselves must agree too: :func:`waveform_correlation`, the
    correlation of the two 8-kHz waveforms (the band lossy codecs keep) at
    the best lag within 30 ms, must be at least ``wave_corr``. A spectrogram
    alone cannot tell two recordings of a sound that repeats one pattern
    apart (two synthetic sirens of the demo toy world reach a log-mel
    correlation of 0.93 with a waveform correlation of 0.07). The mel range stops at
    7 kHz because lossy codecs at low rates cut the highest frequencies; the
    5-frame average makes the signature of a noise-like sound (rain, wind)
    insensitive to a shift of a fraction of a hop and to a codec's noise
    substitution (without it, trimmed Vorbis copies of the thunderstorm
    clips scored only 0.81-0.84); the soft floor keeps quiet parts, where a
    codec removes inaudible detail, from weighing.

Thresholds (defaults ``cosine=0.9``, ``mel_corr=0.9``, ``wave_corr=0.5``)
    The embeddings only select which pairs to check, so ``cosine`` trades
    time for recall; the decision rests on ``mel_corr``. Its default was
    calibrated on the data of ``tests/test_leakage.py`` (measured when this
    module was written):

    - true duplicates, each of the five real ESC-50 clips of
      ``tests/fixtures/esc50`` re-encoded as Ogg Vorbis at 22.05 kHz and as
      MP3 at 32 kHz, trimmed by 1.373 s at the start and 0.81 s at the end:
      mel correlation 0.952-0.996 (offset found: 1.37 s for all ten);
      exact copies are found by digest (1.0);
    - different clips, every pair checked: at most 0.56 between the five
      real ESC-50 clips (three of them thunderstorms); over all 20,736 pairs
      of the tiny toy world's unpaired pool (96 clips) and its ESC-50,
      UrbanSound8K and TUT 2017 clips (216), median 0.11, 99.9th percentile
      0.61, maximum 0.877 (one pair above 0.85, with a 1.18 s overlap;
      synthetic events of shared synthesisers repeating their patterns are
      the worst case). With ``top_k=3`` (random embeddings) the maximum is 0.36.

    0.9 sits between the two groups: about 0.05 below the worst duplicate,
    0.34 above real different clips and 0.02 above the worst synthetic pair
    of all. Chance correlations come from short overlaps: for overlaps of
    2 s or more the toy world's maximum is 0.69, so a larger ``min_overlap``
    widens the margin when the evaluation clips are long enough. Teacher
    cosines of a clip and its lossy, trimmed copy are typically above 0.9
    for an audio encoder that crops or pools over time; lower ``cosine``
    (e.g. 0.8) to check more pairs when the teacher is weak.

    The tiny world is not the worst case: in the demo toy world (500 pool
    clips and 336 training-pair clips against 584 target clips, the 20
    target clips nearest by the trained toy teacher's cosine each), two
    pairs of different synthetic sirens reach 0.93 and 0.928, so the mel
    check alone gives false positives there. Their waveform correlations
    are 0.07 and 0.15, and the highest of all 11 pairs above a mel
    correlation of 0.8 is 0.18, against 0.98-1.0 for the lossy trimmed
    copies of the real ESC-50 clips: ``wave_corr=0.5`` sits in between.

Cost: a mel signature takes a few milliseconds per second of audio; the
cosines are computed in blocks of :data:`COSINE_CHUNK` candidate rows, never
as one ``N x M`` matrix.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import math
import os
import time

import numpy as np
import torch
import torchaudio

from dataset.audio import AudioReadError, read_audio_mono, resample
from dataset.manifest import atomic_write
from dataset.shards import ShardReadError, member_size, split_member_path

logger = logging.getLogger(__name__)

__all__ = [
    "COSINE_CHUNK", "LeakReport", "aligned_correlation", "audio_digest", "audio_digests", "find_leaks",
    "mel_signature", "waveform_correlation",
]

#: Candidate rows per block of the cosine computation (4096 x 10^4 references is 160 MB in float32).
COSINE_CHUNK = 4096
#: Mel signatures kept per call of :func:`find_leaks` (a 10 s clip's is 250 kB).
SIGNATURE_CACHE = 1024
#: Mel range of :func:`mel_signature` (Hz): above 7 kHz lossy codecs at low bit rates cut or smear.
MEL_F_MIN, MEL_F_MAX = 50.0, 7000.0
#: Soft floor of the log of the mel energies (dB below the clip's loudest bin).
MEL_TOP_DB = 60.0
#: Frames (10 ms) of the moving average of the mel energies before the log (odd).
MEL_SMOOTH_FRAMES = 5
#: Offsets rescored exactly by :func:`aligned_correlation` (each with its two neighbours).
RESCORED_OFFSETS = 5
#: Seconds between two writes of the digest cache during :func:`audio_digests`.
CACHE_WRITE_EVERY_S = 30.0

_READ_ERRORS = (AudioReadError, ShardReadError, OSError, ValueError)


# ----------------------------------------------------------------- digests


def audio_digest(path):
    """SHA-256 (hex) of a clip's decoded samples, independent of its container, codec settings and name.

    The clip is read with :func:`dataset.audio.read_audio_mono` (a shard's
    member path too), mixed to mono, quantised to
    ``round(clip(x, -1, 1) * 32767)`` as little-endian int16, and those bytes
    are hashed. A lossless copy (WAV to FLAC, renamed) keeps its digest; a
    lossy re-encoding or a resampling does not (:func:`find_leaks` finds
    those by their mel signature).

    Raises
    ------
    AudioReadError
        If the file is missing, empty or unreadable.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> x = (np.sin(np.arange(1600) / 7.0) * 16000).astype(np.int16)  # the same 16-bit samples in both
    >>> soundfile.write(os.path.join(d, "a.wav"), x, 16000)
    >>> soundfile.write(os.path.join(d, "b.flac"), x, 16000)
    >>> audio_digest(os.path.join(d, "a.wav")) == audio_digest(os.path.join(d, "b.flac"))
    True
    """
    wav, _ = read_audio_mono(path)
    q = np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2")
    return hashlib.sha256(q.tobytes()).hexdigest()


def _file_stamp(path):
    """``(size, mtime_ns)`` of a file, or of a shard's member (its size, the shard's mtime); OSError if absent."""
    split = split_member_path(path)
    if split is None:
        st = os.stat(path)
        return int(st.st_size), int(st.st_mtime_ns)
    return int(member_size(path)), int(os.stat(split[0]).st_mtime_ns)


def _load_cache(cache_path):
    if not cache_path or not os.path.isfile(cache_path):
        return {}
    try:
        with open(cache_path, encoding="utf-8") as f:
            cache = json.load(f)
        if not isinstance(cache, dict):
            raise ValueError("not a JSON object")
        return cache
    except (OSError, ValueError) as e:
        logger.warning("Digest cache %s unreadable (%s): starting a new one.", cache_path, e)
        return {}


def _save_cache(cache_path, cache):
    atomic_write(cache_path, lambda f: json.dump(cache, f, separators=(",", ":"), sort_keys=True), encoding="utf-8")


def audio_digests(paths, cache_path=None, progress=False):
    """:func:`audio_digest` of every path; None for a file that cannot be read (never raises for one file).

    Arguments
    ---------
    paths : iterable of str
        Audio files or shard member paths (``<shard>.tar#<member>``).
    cache_path : str, optional
        A JSON file ``{path: {"size", "mtime_ns", "digest"}}``. An entry is
        reused when the file's size and modification time (for a member: its
        size and the shard's mtime) are unchanged. The file is rewritten
        atomically every :data:`CACHE_WRITE_EVERY_S` seconds and at the end,
        so a killed run resumes where it was; entries of other paths are
        kept. A file that exists but cannot be decoded is cached as None
        too (until it changes); a missing file is not cached.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict
        ``{path: hex digest or None}`` in the order of ``paths``.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(d, "a.wav"), np.zeros(160), 16000)
    >>> out = audio_digests([os.path.join(d, "a.wav"), os.path.join(d, "missing.wav")])
    >>> [v is None for v in out.values()]
    [False, True]
    """
    paths = [os.fspath(p) for p in paths]
    cache = _load_cache(cache_path)
    out = {}
    dirty = False
    last_write = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="Audio digests", unit="clips", dynamic_ncols=True)
    failed = 0
    try:
        for path in paths:
            if bar is not None:
                bar.update(1)
            if path in out:
                continue
            try:
                size, mtime = _file_stamp(path)
            except (OSError, ValueError) as e:
                logger.debug("No digest for %s: %s", path, e)
                out[path] = None
                failed += 1
                continue
            entry = cache.get(path)
            if isinstance(entry, dict) and entry.get("size") == size and entry.get("mtime_ns") == mtime:
                out[path] = entry.get("digest")
                failed += out[path] is None
                continue
            try:
                digest = audio_digest(path)
            except _READ_ERRORS as e:
                logger.debug("No digest for %s: %s", path, e)
                digest = None
                failed += 1
            out[path] = digest
            if cache_path:
                cache[path] = {"size": size, "mtime_ns": mtime, "digest": digest}
                dirty = True
                if time.monotonic() - last_write >= CACHE_WRITE_EVERY_S:
                    _save_cache(cache_path, cache)
                    dirty, last_write = False, time.monotonic()
    finally:
        if bar is not None:
            bar.close()
        if cache_path and dirty:
            _save_cache(cache_path, cache)
    if failed:
        logger.warning("%d of %d audio files could not be read (digest None).", failed, len(out))
    return out


# ----------------------------------------------------------- mel signatures


@functools.lru_cache(maxsize=8)
def _mel_transform(sample_rate, n_mels):
    n_fft = round(0.025 * sample_rate)
    hop = round(0.010 * sample_rate)
    f_max = min(MEL_F_MAX, sample_rate / 2.0)
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop, f_min=MEL_F_MIN, f_max=f_max,
        n_mels=n_mels, power=2.0, center=False, norm="slaney", mel_scale="slaney",
    )


def mel_signature(path, sample_rate=16000, n_mels=64):
    """A clip's band-centred log-mel spectrogram, the second signal of :func:`find_leaks`.

    The clip is mixed to mono and resampled to ``sample_rate``; frames of
    25 ms every 10 ms (no padding: frame ``j`` starts at ``j * 10`` ms), mel
    bands from 50 Hz to 7 kHz (or the Nyquist frequency), energies averaged
    over :data:`MEL_SMOOTH_FRAMES` frames, log10 of the energies plus a floor
    60 dB below the loudest bin; then each frame's mean over
    the bands is removed, and each band's mean over time. Without the band
    means, two recordings of the same kind of sound would correlate through
    their average spectrum; without the frame means, any two clips whose
    loudness rises and falls at the same moments (an event, then silence)
    would correlate through their envelope (between different clips of the
    tests, without the 5-frame average, the band means alone let the
    correlation reach 0.80 on a sample of the toy world's pairs and 0.53 on
    real ESC-50 clips; removing the frame means too brought these to 0.68
    and 0.29). A gain change vanishes with either.

    Returns
    -------
    numpy.ndarray
        float32 ``[frames, n_mels]`` (``frames`` is 0 for a clip shorter than one window).

    Raises
    ------
    AudioReadError
        If the file is missing, empty or unreadable.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(p, np.random.default_rng(0).normal(0, 0.1, 44100), 44100)
    >>> sig = mel_signature(p)
    >>> sig.shape, sig.dtype, bool(np.abs(sig.mean(axis=0)).max() < 1e-4)
    ((98, 64), dtype('float32'), True)
    """
    wav, sr = read_audio_mono(path)
    x = resample(torch.from_numpy(np.ascontiguousarray(wav)), sr, sample_rate)
    transform = _mel_transform(int(sample_rate), int(n_mels))
    if x.shape[-1] < transform.n_fft:
        return np.zeros((0, n_mels), dtype=np.float32)
    with torch.no_grad():
        mel = transform(x).double()  # [n_mels, frames]
        if MEL_SMOOTH_FRAMES > 1:
            mel = torch.nn.functional.avg_pool1d(mel[None], MEL_SMOOTH_FRAMES, 1, padding=MEL_SMOOTH_FRAMES // 2,
                                                 count_include_pad=False)[0]
        mel = mel.T  # [frames, n_mels]
    floor = max(float(mel.max()), 1e-20) * 10.0 ** (-MEL_TOP_DB / 10.0)
    logmel = torch.log10(mel + floor)
    logmel = logmel - logmel.mean(dim=1, keepdim=True)  # each frame's level: the loudness envelope
    logmel = logmel - logmel.mean(dim=0, keepdim=True)  # each band's level: the average spectrum
    return logmel.numpy().astype(np.float32)


# ---------------------------------------------------------------- alignment


def _window_sums(x, starts, length):
    """Per-band sums of ``x[s:s+length]`` and of its squares for every start ``s`` (float64, ``[len(starts), B]``)."""
    c1 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    c2 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
    return c1[starts + length] - c1[starts], c2[starts + length] - c2[starts]


def _exact_corr(a, b, k):
    """Band-centred Pearson correlation of ``a`` and ``b`` aligned with ``b[j]`` at ``a[j + k]``; None if flat."""
    lo, hi = max(0, k), min(a.shape[0], k + b.shape[0])
    wa = a[lo:hi] - a[lo:hi].mean(axis=0)
    wb = b[lo - k:hi - k] - b[lo - k:hi - k].mean(axis=0)
    va, vb = float((wa * wa).sum()), float((wb * wb).sum())
    if va <= 0.0 or vb <= 0.0:
        return None
    return float((wa * wb).sum() / math.sqrt(va * vb))


def aligned_correlation(sig_a, sig_b, min_overlap=1.0, hop_s=0.01):
    """Best correlation of two signatures over their overlap, over every time offset: ``(corr, offset_s, overlap_s)``.

    ``sig_b`` is slid along ``sig_a``: at offset ``k`` frames, frame ``j`` of
    ``sig_b`` faces frame ``j + k`` of ``sig_a`` (``offset_s = k * hop_s``,
    positive when ``sig_b`` starts inside ``sig_a``, negative when ``sig_a``
    starts inside ``sig_b``). At each offset whose overlap has at least
    ``min_overlap`` seconds, the score is the Pearson correlation of the two
    overlapping blocks with each band centred over the overlap (the
    correlation of ``A - mean_t(A)`` and ``B - mean_t(B)``, all bands
    pooled). All offsets are scored at once from FFT cross-correlations and
    cumulative sums; the best :data:`RESCORED_OFFSETS` offsets and their
    neighbours are then recomputed directly, and the best of those is
    returned, exact at its offset.

    Arguments
    ---------
    sig_a, sig_b : numpy.ndarray
        ``[frames, bands]`` (:func:`mel_signature`), the same number of bands.
    min_overlap : float
        Least overlap, seconds (rounded up to whole frames).
    hop_s : float
        Seconds per frame.

    Returns
    -------
    corr : float
        In ``[-1, 1]``; ``-1.0`` (with ``0.0, 0.0``) when no offset overlaps
        enough or a side has no variance at every such offset.
    offset_s : float
    overlap_s : float

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(500, 8))
    >>> aligned_correlation(a, a[120:300])        # b is a[120:300]: it starts 1.2 s into a
    (1.0, 1.2, 1.8)
    >>> aligned_correlation(a[120:300], a)[1]     # swapped: a starts 1.2 s into b
    -1.2
    >>> aligned_correlation(a, a[:50])            # 0.5 s < min_overlap
    (-1.0, 0.0, 0.0)
    """
    a = np.asarray(sig_a, dtype=np.float64)
    b = np.asarray(sig_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Signatures must be [frames, bands] with the same bands, got {a.shape} and {b.shape}.")
    na, nb = a.shape[0], b.shape[0]
    min_frames = max(1, math.ceil(min_overlap / hop_s - 1e-9))
    if min(na, nb) < min_frames or a.shape[1] == 0:
        return -1.0, 0.0, 0.0
    # Offsets k in [k_min, k_max] leave at least min_frames of overlap.
    ks = np.arange(min_frames - nb, na - min_frames + 1)
    lo = np.maximum(ks, 0)
    hi = np.minimum(na, ks + nb)
    length = hi - lo
    # Raw cross products summed over bands: sum_j a[j + k] . b[j], by FFT.
    n = 1 << int(math.ceil(math.log2(na + nb)))
    spec = np.fft.rfft(a, n, axis=0) * np.conj(np.fft.rfft(b, n, axis=0))
    xc = np.fft.irfft(spec.sum(axis=1), n)  # xc[k mod n]
    cross = xc[np.mod(ks, n)]
    sa, qa = _window_sums(a, lo, length)
    sb, qb = _window_sums(b, lo - ks, length)
    inv = 1.0 / length[:, None]
    num = cross - (sa * sb * inv).sum(axis=1)
    va = (qa - sa * sa * inv).sum(axis=1)
    vb = (qb - sb * sb * inv).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        approx = num / np.sqrt(np.clip(va, 0.0, None) * np.clip(vb, 0.0, None))
    scale_a, scale_b = float((a * a).sum()), float((b * b).sum())
    flat = (va <= 1e-9 * max(scale_a, 1e-300)) | (vb <= 1e-9 * max(scale_b, 1e-300))
    approx = np.where(flat | ~np.isfinite(approx), -np.inf, approx)
    order = np.argsort(-approx, kind="stable")[:RESCORED_OFFSETS]
    best = (-1.0, 0.0, 0.0)
    best_corr = -math.inf
    tried = set()
    for i in order:
        if not np.isfinite(approx[i]):
            break
        for j in (i - 1, i, i + 1):
            if j < 0 or j >= len(ks) or j in tried:
                continue
            tried.add(j)
            corr = _exact_corr(a, b, int(ks[j]))
            if corr is not None and corr > best_corr:
                best_corr = corr
                best = (round(min(1.0, max(-1.0, corr)), 6), round(float(ks[j]) * hop_s, 6),
                        round(float(length[j]) * hop_s, 6))
    return best


# -------------------------------------------------------------------- audit


#: Rate of the waveform check: resampling to it keeps the band below 4 kHz, which lossy codecs preserve.
WAVE_RATE = 8000


def _waveform(path):
    wav, sr = read_audio_mono(path)
    return resample(torch.from_numpy(np.ascontiguousarray(wav)), sr, WAVE_RATE).numpy().astype(np.float64)


def waveform_correlation(path_a, path_b, offset_s, min_overlap=1.0, search_s=0.03):
    """The largest absolute Pearson correlation of the two clips' 8-kHz waveforms near ``offset_s``.

    ``offset_s`` is where ``path_b`` starts in ``path_a``'s time (as
    :func:`aligned_correlation` gives it, to 10 ms); every lag within
    ``search_s`` of it is tried, sample by sample, over the overlap (at least
    ``min_overlap`` seconds, else -1.0). A lossy copy resampled and trimmed
    keeps its waveform (0.98-1.0 for the trimmed Vorbis and MP3 copies of the
    five real ESC-50 clips of ``tests/fixtures/esc50``); a different recording
    whose spectrogram repeats the same pattern does not (0.07 for two synthetic
    sirens of the toy world whose log-mel correlation is 0.93).

    Example
    -------
    >>> import os, tempfile, soundfile
    >>> d = tempfile.mkdtemp()
    >>> x = np.random.default_rng(0).normal(size=24000) * 0.1
    >>> soundfile.write(os.path.join(d, "a.wav"), x, 8000)
    >>> soundfile.write(os.path.join(d, "b.wav"), -x[4000:20000], 8000)
    >>> round(waveform_correlation(os.path.join(d, "a.wav"), os.path.join(d, "b.wav"), 0.5), 3)
    1.0
    """
    a, b = _waveform(path_a), _waveform(path_b)
    centre, reach, least = round(offset_s * WAVE_RATE), round(search_s * WAVE_RATE), round(min_overlap * WAVE_RATE)
    best = -1.0
    for lag in range(centre - reach, centre + reach + 1):
        start_a, start_b = max(0, lag), max(0, -lag)
        n = min(len(a) - start_a, len(b) - start_b)
        if n < max(1, least):
            continue
        x = a[start_a:start_a + n] - a[start_a:start_a + n].mean()
        y = b[start_b:start_b + n] - b[start_b:start_b + n].mean()
        scale = math.sqrt(float(x @ x) * float(y @ y))
        if scale > 0:
            best = max(best, abs(float(x @ y)) / scale)
    return best


class LeakReport(list):
    """The list of leaks :func:`find_leaks` returns, with the files it could not read.

    Attributes
    ----------
    unreadable : list of str
        Candidate and reference paths that could not be decoded (skipped),
        each once, in the order met.
    """

    def __init__(self, leaks=(), unreadable=()):
        super().__init__(leaks)
        self.unreadable = list(unreadable)


class _Signatures:
    """Mel signatures by path, the last :data:`SIGNATURE_CACHE` kept; None for an unreadable file."""

    def __init__(self, size=SIGNATURE_CACHE):
        self.size = size
        self.items = collections.OrderedDict()

    def get(self, path):
        if path in self.items:
            self.items.move_to_end(path)
            return self.items[path]
        try:
            sig = mel_signature(path)
        except _READ_ERRORS as e:
            logger.debug("No mel signature for %s: %s", path, e)
            sig = None
        self.items[path] = sig
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return sig


def _check_embeddings(emb, n, what):
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"{what} embeddings must be [{n}, D] (one row per path), got {emb.shape}.")
    return emb


def find_leaks(candidates, candidate_emb, references, reference_emb, *, cosine=0.9, mel_corr=0.9, top_k=3,
               min_overlap=1.0, wave_corr=0.5, digests=None, progress=False):
    """Candidate clips that are evaluation clips: exact copies (same samples) or near copies (confirmed by mel).

    1. Exact: a candidate whose :func:`audio_digest` equals a reference's.
    2. Near: for every other candidate, its ``top_k`` references by teacher
       cosine with cosine ``>= cosine``; each is compared with
       :func:`aligned_correlation` of the two :func:`mel_signature` and
       confirmed when the correlation is ``>= mel_corr``. The confirmed
       reference of highest correlation is reported.

    Cosines are computed in blocks of :data:`COSINE_CHUNK` candidates (float32
    products); mel signatures are cached per path within the call (the last
    :data:`SIGNATURE_CACHE`).

    Arguments
    ---------
    candidates : list of str
        Audio paths checked (the unpaired pool, or a pair set's clips).
    candidate_emb : numpy.ndarray
        ``[N, D]`` L2-normalised teacher embeddings, in the order of ``candidates`` (float16 or float32).
    references : list of str
        The evaluation clips.
    reference_emb : numpy.ndarray
        ``[M, D]``, in the order of ``references``.
    cosine : float
        Teacher cosine a pair needs to be checked (``-1.0`` checks the ``top_k`` of every candidate).
    mel_corr : float
        Mel correlation that confirms a near duplicate (see the module's docstring for its calibration).
    top_k : int
        References checked per candidate.
    min_overlap : float
        Least aligned overlap, seconds, for the mel and waveform correlations.
    wave_corr : float
        Waveform correlation at the aligned offset (:func:`waveform_correlation`) that a mel-confirmed pair
        also needs: the samples, not only the spectrogram's pattern, must agree.
    digests : dict, optional
        ``{path: digest or None}`` from :func:`audio_digests`; paths missing from it are hashed here.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    LeakReport
        A list with one dict per leaked candidate, in candidate order:
        ``{"path", "reference", "kind" ("exact" or "near"), "cosine",
        "mel_corr", "offset_s", "wave_corr"}``. ``offset_s`` is where the candidate starts
        in the reference (seconds; negative when the reference starts inside
        the candidate); exact copies have ``mel_corr`` 1.0 and ``offset_s``
        0.0. Files that cannot be read are skipped, listed in the report's
        ``unreadable`` attribute and counted in a logged warning.
    """
    candidates = [os.fspath(p) for p in candidates]
    references = [os.fspath(p) for p in references]
    cand_emb = _check_embeddings(candidate_emb, len(candidates), "Candidate")
    ref_emb = _check_embeddings(reference_emb, len(references), "Reference")
    if cand_emb.shape[1] != ref_emb.shape[1]:
        raise ValueError(f"Embedding sizes differ: {cand_emb.shape[1]} and {ref_emb.shape[1]}.")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not candidates or not references:
        return LeakReport()

    digests = dict(digests or {})
    missing = [p for p in dict.fromkeys(candidates + references) if p not in digests]
    if missing:
        digests.update(audio_digests(missing, progress=progress))
    unreadable = {}  # path -> None, ordered
    ref_by_digest = {}
    for j, path in enumerate(references):
        digest = digests.get(path)
        if digest is None:
            unreadable[path] = None
        else:
            ref_by_digest.setdefault(digest, j)

    leaks = {}
    near_rows = []
    for i, path in enumerate(candidates):
        digest = digests.get(path)
        if digest is None:
            unreadable[path] = None
        elif digest in ref_by_digest:
            j = ref_by_digest[digest]
            cos = float(np.dot(cand_emb[i].astype(np.float64), ref_emb[j].astype(np.float64)))
            leaks[i] = {"path": path, "reference": references[j], "kind": "exact", "cosine": round(cos, 6),
                        "mel_corr": 1.0, "offset_s": 0.0, "wave_corr": 1.0}
        else:
            near_rows.append(i)

    k = min(int(top_k), len(references))
    ref_t = torch.from_numpy(np.ascontiguousarray(ref_emb, dtype=np.float32))
    signatures = _Signatures()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(near_rows), desc="Leak check", unit="clips", dynamic_ncols=True)
    checked = 0
    try:
        for start in range(0, len(near_rows), COSINE_CHUNK):
            rows = near_rows[start:start + COSINE_CHUNK]
            q = torch.from_numpy(np.ascontiguousarray(cand_emb[rows], dtype=np.float32))
            sims = q @ ref_t.T
            top_v, top_i = torch.topk(sims, k, dim=1)
            top_v, top_i = top_v.numpy(), top_i.numpy()
            del sims
            for r, i in enumerate(rows):
                if bar is not None:
                    bar.update(1)
                keep = [(float(v), int(j)) for v, j in zip(top_v[r], top_i[r]) if v >= cosine]
                if not keep:
                    continue
                sig_c = signatures.get(candidates[i])
                if sig_c is None:
                    unreadable[candidates[i]] = None
                    continue
                best = None
                for cos, j in keep:
                    sig_r = signatures.get(references[j])
                    if sig_r is None:
                        unreadable[references[j]] = None
                        continue
                    checked += 1
                    corr, offset, _ = aligned_correlation(sig_r, sig_c, min_overlap=min_overlap)
                    if corr < mel_corr or (best is not None and corr <= best["mel_corr"]):
                        continue
                    # The samples themselves at that offset: a re-encoded copy keeps its waveform below 4 kHz,
                    # another recording of a sound that repeats a pattern (a siren) does not.
                    wave = waveform_correlation(references[j], candidates[i], offset, min_overlap=min_overlap)
                    if wave >= wave_corr:
                        best = {"path": candidates[i], "reference": references[j], "kind": "near",
                                "cosine": round(cos, 6), "mel_corr": corr, "offset_s": offset,
                                "wave_corr": round(wave, 6)}
                if best is not None:
                    leaks[i] = best
    finally:
        if bar is not None:
            bar.close()
    if unreadable:
        listed = ", ".join(list(unreadable)[:5]) + (", ..." if len(unreadable) > 5 else "")
        logger.warning("Leakage audit: %d unreadable files skipped (%s).", len(unreadable), listed)
    logger.info("Leakage audit: %d candidates, %d references, %d exact and %d near duplicates "
                "(%d pairs checked by mel).", len(candidates), len(references),
                sum(v["kind"] == "exact" for v in leaks.values()),
                sum(v["kind"] == "near" for v in leaks.values()), checked)
    return LeakReport([leaks[i] for i in sorted(leaks)], unreadable)
