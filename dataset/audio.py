"""Audio I/O: read with soundfile, mix to mono, resample, fit to a fixed length.

``torchaudio.load`` needs torchcodec on torchaudio >= 2.9, so files are read
with soundfile and resampled with torchaudio's functional API. Every failure
to read a file becomes an :class:`AudioReadError` that names the file and the
reason, so a bad clip in a 10^5-clip corpus is easy to find.

A *member path* (``<shard>.tar#<member>``, :mod:`dataset.shards`) reads the
member of a tar shard: soundfile decodes it from an in-memory file holding its
bytes, with the same partial reads (``start``, ``frames``) as a file on disk.
"""

import functools
import io
import logging
import math
import os
import random

import numpy as np
import soundfile
import torch
import torchaudio

from dataset.shards import audio_exists, read_member_bytes, split_member_path

logger = logging.getLogger(__name__)

# What libsndfile (>= 1.1 for mp3) decodes; used to index corpora on disk.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

CROP_MODES = ("random", "start", "center", "paper")

#: The seed the paper code's curation embedding gives Python's ``random`` before every file
#: (``dataset/curation_dataset.py``, ``load_curation_audio``).
PAPER_CROP_SEED = 123


class AudioReadError(RuntimeError):
    """An audio file is missing, empty, or cannot be decoded."""


def _check_file(path):
    """Returns ``path`` as ``str`` or raises AudioReadError if it is not a file (nor a shard's member)."""
    path = os.fspath(path)
    if not audio_exists(path):
        raise AudioReadError(f"Audio file not found: {path}")
    return path


def _source(path):
    """``(path as str, what soundfile opens)``: the path itself, or a ``BytesIO`` factory for a member path.

    Raises AudioReadError (naming ``path``) if the file or member is missing,
    or the shard cannot be read.
    """
    path = os.fspath(path)
    if split_member_path(path) is None:
        if not os.path.isfile(path):
            raise AudioReadError(f"Audio file not found: {path}")
        # A name that is not UTF-8 (held as surrogates, as os.listdir gives it) goes to soundfile as bytes,
        # which it opens as they are; as str, soundfile would fail to encode it.
        target = os.fsencode(path) if any(0xD800 <= ord(c) <= 0xDFFF for c in path) else path
        return path, lambda: target
    try:
        data = read_member_bytes(path)
    except FileNotFoundError as e:
        raise AudioReadError(f"Audio file not found: {path} ({e})") from e
    except (OSError, ValueError) as e:
        raise AudioReadError(f"Unreadable or corrupt audio file {path}: {e}") from e
    return path, lambda: io.BytesIO(data)


def probe_audio(path):
    """Reads an audio file's header: number of frames, sample rate, channels.

    Only the header is decoded, so probing a whole corpus is cheap (a shard's
    member is read whole from the shard, then only its header decoded).

    Arguments
    ---------
    path : str or os.PathLike
        The audio file.

    Returns
    -------
    frames : int
    sample_rate : int
    channels : int

    Raises
    ------
    AudioReadError
        If the file is missing, unreadable/corrupt, or has no frames.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(p, np.zeros((800, 2)), 16000)
    >>> probe_audio(p)
    (800, 16000, 2)
    """
    return _probe(*_source(path))


def _probe(path, opener):
    try:
        info = soundfile.info(opener())
    except (RuntimeError, OSError, ValueError) as e:
        raise AudioReadError(f"Unreadable or corrupt audio file {path}: {e}") from e
    if info.frames <= 0:
        raise AudioReadError(f"Empty audio file (0 frames): {path}")
    return int(info.frames), int(info.samplerate), int(info.channels)


def read_audio_mono(path, start=0, frames=-1):
    """Reads an audio file (or a segment of it) and averages its channels.

    Arguments
    ---------
    path : str or os.PathLike
        The audio file (any format soundfile reads, see ``AUDIO_EXTENSIONS``).
    start : int
        First frame to read.
    frames : int
        Number of frames to read (-1: to the end).

    Returns
    -------
    wav : numpy.ndarray
        float32 samples, shape ``[T]``.
    sample_rate : int

    Raises
    ------
    AudioReadError
        If the file is missing, unreadable/corrupt, or has no frames.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "s.wav")
    >>> soundfile.write(p, np.array([[0.5, 0.0], [0.25, 0.25]]), 8000, subtype="FLOAT")
    >>> wav, sr = read_audio_mono(p)
    >>> wav.tolist(), wav.dtype, sr
    ([0.25, 0.25], dtype('float32'), 8000)
    """
    return _read_mono(*_source(path), start, frames)


def read_audio_channels(path):
    """Reads a whole audio file, channels kept: float32 ``[T, C]`` and its rate (AudioReadError naming the file).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "s.wav")
    >>> soundfile.write(p, np.array([[0.5, 0.0], [0.25, 0.25]]), 8000, subtype="FLOAT")
    >>> data, sr = read_audio_channels(p)
    >>> data.shape, data.dtype, sr
    ((2, 2), dtype('float32'), 8000)
    """
    path, opener = _source(path)
    try:
        data, sample_rate = soundfile.read(opener(), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise AudioReadError(f"Unreadable or corrupt audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise AudioReadError(f"Empty audio file (0 frames): {path}")
    return data, int(sample_rate)


def _read_mono(path, opener, start=0, frames=-1):
    try:
        data, sample_rate = soundfile.read(opener(), start=start, frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise AudioReadError(f"Unreadable or corrupt audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise AudioReadError(f"Empty audio file (0 frames): {path}")
    # mean() upcasts nothing for float32 input, but be explicit: callers rely on float32.
    wav = data.mean(axis=1).astype(np.float32, copy=False)
    return wav, int(sample_rate)


def resample(wav, orig_sr, new_sr):
    """Resamples a waveform with torchaudio's band-limited sinc interpolation.

    Arguments
    ---------
    wav : torch.Tensor
        Waveform ``[..., T]``.
    orig_sr : int
        Its sample rate.
    new_sr : int
        The wanted sample rate.

    Returns
    -------
    torch.Tensor
        ``[..., ceil(T * new_sr / orig_sr)]``; ``wav`` itself if the rates are equal.

    Example
    -------
    >>> resample(torch.zeros(48000), 48000, 16000).shape
    torch.Size([16000])
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return wav
    return _resampler(orig_sr, new_sr)(wav)


@functools.lru_cache(maxsize=16)
def _resampler(orig_sr, new_sr):
    # Building the sinc kernel costs more than applying it (44.1 -> 16 kHz has
    # 160 phases); torchaudio's functional API rebuilds it on every call.
    return torchaudio.transforms.Resample(orig_sr, new_sr)


def fit_length(wav, num_samples, crop="random", generator=None):
    """Tiles short clips and crops long ones so that the result has ``num_samples`` samples.

    A short clip is repeated rather than zero-padded, so a 0.05 s event fills
    the window the model sees (the paper code tiles at zero-shot and curation,
    but zero-pads in training: at a random offset, centred in validation).

    Arguments
    ---------
    wav : torch.Tensor
        Waveform ``[T]`` with ``T > 0``.
    num_samples : int
        Length of the result.
    crop : str
        Where to crop a longer clip: ``"random"`` (uniform offset, for
        training), ``"start"``, ``"center"`` or ``"paper"`` (deterministic,
        for evaluation and embedding extraction; ``"paper"`` is the paper
        code's curation crop, :func:`paper_crop_offset`).
    generator : torch.Generator, optional
        Source of the random offset; the global torch RNG if None, so that
        ``torch.manual_seed`` reproduces the crop.

    Returns
    -------
    torch.Tensor
        ``[num_samples]``.

    Example
    -------
    >>> fit_length(torch.tensor([1.0, 2.0, 3.0]), 7).tolist()
    [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    >>> fit_length(torch.arange(10.0), 4, crop="center").tolist()
    [3.0, 4.0, 5.0, 6.0]
    >>> fit_length(torch.arange(10.0), 4, crop="start").tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> fit_length(torch.arange(10.0), 4, crop="paper").tolist()  # random.Random(123).randrange(6) == 0
    [0.0, 1.0, 2.0, 3.0]
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    num_samples = int(num_samples)
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    length = wav.shape[-1]
    if length == 0:
        raise ValueError("Cannot fit an empty waveform to a length (nothing to tile).")
    if length < num_samples:
        repeats = math.ceil(num_samples / length)
        return wav.repeat(repeats)[:num_samples]
    if length == num_samples:
        return wav
    offset = crop_offset(length - num_samples, crop, generator)
    return wav[offset : offset + num_samples]


def crop_offset(max_offset, crop, generator=None):
    """Start of a crop in ``[0, max_offset]``: 0, the middle, the paper code's, or uniform at random.

    ``max_offset`` is the clip's length minus the crop's (>= 1 for ``"paper"``,
    whose offset is ``random.Random(123).randrange(max_offset)``, in
    ``[0, max_offset - 1]``: see :func:`paper_crop_offset`).

    Example
    -------
    >>> crop_offset(10, "start"), crop_offset(10, "center"), crop_offset(220500, "paper")
    (0, 5, 13726)
    """
    if crop == "start":
        return 0
    if crop == "center":
        return max_offset // 2
    if crop == "paper":
        return random.Random(PAPER_CROP_SEED).randrange(max_offset)
    return int(torch.randint(0, max_offset + 1, (1,), generator=generator).item())


def paper_crop_offset(length, num_samples):
    """The paper code's crop of a long clip when it embeds audio for curation.

    The original (``dataset/curation_dataset.py``, ``load_curation_audio``)
    calls ``random.seed(123)`` before every file, resamples the whole file
    and, when it is longer than the window, starts the window at
    ``random.randrange(length - num_samples)``: the offset depends on the
    resampled length only, so it is deterministic (a 10 s clip at 44.1 kHz
    with a 5 s window starts at sample 13726, 0.311 s). A private
    ``random.Random`` gives the same number without touching the global RNG.

    Arguments
    ---------
    length : int
        Samples of the whole clip after resampling to the model's rate.
    num_samples : int
        Samples of the window (``length > num_samples``: shorter clips are tiled, never cropped).

    Returns
    -------
    int
        The window's first sample, in ``[0, length - num_samples - 1]``.

    Example
    -------
    >>> paper_crop_offset(441000, 220500)
    13726
    """
    if length <= num_samples:
        raise ValueError(f"Only a clip longer than the window is cropped ({length} <= {num_samples} samples).")
    return crop_offset(length - num_samples, "paper")


def resampled_length(frames, orig_sr, new_sr):
    """Samples of a ``frames``-long signal resampled from ``orig_sr`` to ``new_sr`` (torchaudio's ``ceil``).

    Example
    -------
    >>> resampled_length(160000, 16000, 44100), resampled_length(3, 44100, 44100)
    (441000, 3)
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return int(frames)
    gcd = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // gcd, new_sr // gcd
    return int(math.ceil(new * frames / orig))  # the expression of torchaudio's _apply_sinc_resample_kernel


def _paper_segment(total, orig_sr, new_sr, num_samples):
    """Source frames to read for the paper crop, and where the window starts in their resampled signal.

    The paper code resamples the whole file and then slices it. Reading only
    a segment gives the same samples if the segment starts on a block of the
    resampling kernel (``orig_sr / gcd`` source frames, whose outputs are
    ``new_sr / gcd`` samples: the filter's phases repeat with that period)
    and reaches the filter's half-width beyond the window on both sides (or
    the file's ends, where both are zero-padded alike).

    Returns
    -------
    (start, frames, local_offset) or None
        None when the clip is not longer than the window (it is tiled whole).
    """
    length = resampled_length(total, orig_sr, new_sr)
    if length <= num_samples:
        return None
    offset = paper_crop_offset(length, num_samples)
    if int(orig_sr) == int(new_sr):
        return offset, num_samples, 0
    gcd = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // gcd, int(new_sr) // gcd
    margin = -(-_resampler(int(orig_sr), int(new_sr)).width // orig) + 1  # blocks covering the filter's half-width
    first = max(0, offset // new - margin)
    last = (offset + num_samples - 1) // new + 1 + margin  # exclusive
    start = first * orig
    stop = min(total, last * orig)
    return start, stop - start, offset - first * new


def load_audio(path, sample_rate, duration=None, crop="random", generator=None):
    """Reads a clip, mixes it to mono, resamples it and optionally fits it to ``duration``.

    Arguments
    ---------
    path : str or os.PathLike
        The audio file.
    sample_rate : int
        The model's sample rate.
    duration : float, optional
        Seconds; None keeps the whole clip.
    crop : str
        ``"random"``, ``"start"``, ``"center"`` or ``"paper"``, see
        :func:`fit_length`. ``"paper"`` places the window as the paper code
        did in the resampled whole file (:func:`paper_crop_offset`); the
        other crops are placed in source frames.
    generator : torch.Generator, optional
        For the random crop.

    Returns
    -------
    torch.Tensor
        float32 ``[T]`` (``round(duration * sample_rate)`` samples if ``duration`` is given).

    Raises
    ------
    AudioReadError
        If the file is missing, empty or unreadable.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> soundfile.write(p, np.zeros((4410, 2)), 44100)
    >>> load_audio(p, 16000).shape
    torch.Size([1600])
    >>> load_audio(p, 16000, duration=0.5, crop="start").shape
    torch.Size([8000])
    """
    path, opener = _source(path)  # a shard's member is read once
    start, frames, local = 0, -1, None
    if duration is not None:
        total, orig_sr, _ = _probe(path, opener)
        if crop == "paper":
            # The paper code's window, placed in the resampled whole file; only the frames
            # that produce it (plus the filter's reach) are read and resampled.
            segment = _paper_segment(total, orig_sr, sample_rate, round(duration * sample_rate))
            if segment is not None:
                start, frames, local = segment
                crop = "start"
        else:
            # Long clips (AudioSet 10 s, Clotho 30 s): read and resample only the
            # crop, not the whole file. The crop is chosen in source frames.
            needed = int(math.ceil(duration * orig_sr)) + 1
            if total > needed:
                start, frames = crop_offset(total - needed, crop, generator), needed
                crop = "start"
    wav, orig_sr = _read_mono(path, opener, start, frames)
    # A single NaN would spread through the resampling filter and the whole
    # batch's loss; clean it before any processing.
    if not np.isfinite(wav).all():
        wav = np.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)
    wav = resample(torch.from_numpy(wav), orig_sr, sample_rate)
    if local:
        wav = wav[local:]
    if duration is not None:
        wav = fit_length(wav, round(duration * sample_rate), crop=crop, generator=generator)
    return wav.contiguous()


# ------------------------------------------------------------ folders
def walk_audio_files(folder, extensions=AUDIO_EXTENSIONS, exclude=None, outside_links=None):
    """Every audio file below ``folder``, by extension, in one sorted depth-first walk.

    The one folder walker of the project (corpus preparation, the index).
    Files of a folder come before its subfolders, both in name order.
    Symbolic links to folders are followed (users often link their audio
    in), each real folder once; a folder that cannot be listed is skipped
    with a warning. One ``os.scandir`` pass per folder: looking 10^5 files up
    one by one is slow on network file systems.

    Arguments
    ---------
    folder : str
        Root folder.
    extensions : tuple of str
        Extensions to keep (compared case-insensitively).
    exclude : str, optional
        A folder inside ``folder`` to leave out (e.g. an output folder).
    outside_links : list, optional
        Given, the walk never leaves ``folder``: a symbolic link (to a
        folder or a file) that leads out of it is not followed but appended
        to this list. Links within it are followed, each real folder once.

    Yields
    ------
    str
        Absolute paths.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in ["b.wav", "sub/a b,é.FLAC", "notes.txt", "a.ogg"]:
    ...     os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
    ...     _ = open(os.path.join(d, name), "w")
    >>> [os.path.relpath(p, d) for p in walk_audio_files(d)]
    ['a.ogg', 'b.wav', 'sub/a b,é.FLAC']
    """
    extensions = tuple(e.lower() for e in extensions)
    exclude = os.path.realpath(exclude) if exclude else None
    visited = set()
    stack = [os.path.abspath(os.fspath(folder))]
    root = os.path.realpath(stack[0])

    def leaves(entry):
        """True for a link that leads out of ``folder`` when the walk must stay inside (recorded)."""
        if outside_links is None or not entry.is_symlink():
            return False
        target = os.path.realpath(entry.path)
        if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
            return False
        outside_links.append(entry.path)
        return True
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in visited or real == exclude:
            continue
        visited.add(real)
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            logger.warning("Cannot list %s (%s); its audio is ignored.", current, e)
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir():
                    if not leaves(entry):
                        subfolders.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in extensions:
                    if not leaves(entry):
                        yield entry.path
            except OSError:
                continue  # a dangling link or a file removed during the walk
        stack.extend(reversed(subfolders))


def readable_extensions():
    """:data:`AUDIO_EXTENSIONS` that this soundfile decodes (``.mp3`` needs libsndfile 1.1+)."""
    if "MP3" in soundfile.available_formats():
        return AUDIO_EXTENSIONS
    return tuple(e for e in AUDIO_EXTENSIONS if e != ".mp3")


def list_audio_files(folder, exclude=None):
    """Audio files below ``folder`` that soundfile can decode (recursive, sorted, absolute), never outside it.

    Symbolic links within ``folder`` are followed (each real folder once, so
    a loop ends); a link that leads out of it (``up -> ..``, a link to
    another disk) is not, and one warning gives their count and the first of them.

    Arguments
    ---------
    folder : str
        The collection.
    exclude : str, optional
        A folder inside ``folder`` to leave out (e.g. the index's own output folder).

    Returns
    -------
    list of str

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in ["b.wav", "sub/a b,é.FLAC", "notes.txt"]:
    ...     os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
    ...     _ = open(os.path.join(d, name), "w")
    >>> [os.path.relpath(p, d) for p in list_audio_files(d)]
    ['b.wav', 'sub/a b,é.FLAC']
    """
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Audio folder not found: {folder}")
    outside = []
    paths = list(walk_audio_files(folder, readable_extensions(), exclude, outside_links=outside))
    if outside:
        logger.warning("Skipped %d symbolic link(s) in %s that lead out of it (e.g. %s -> %s): only files inside "
                       "the folder given are listed (to include those, give their folder as its own input).",
                       len(outside), folder, outside[0], os.path.realpath(outside[0]))
    return paths
