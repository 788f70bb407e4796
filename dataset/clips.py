"""The one audio dataset: fixed-duration clips of audio files, for training, evaluation and embedding.

:class:`AudioClips` holds the whole policy of how a file becomes what a
model sees, and every reader of audio uses it: the training and zero-shot
pipelines (:mod:`dataset.pipelines`, one clip per row), the curation
embeddings, the retrieval evaluation, the inference API and the index
(:mod:`embeddings.extract`, whole path lists, optionally chunked).

- **Fit to the window**: a clip shorter than ``duration`` is tiled
  (repeated) and cut; a longer one is cropped.
- **Crop**: ``"random"`` for training, drawn from a private generator seeded
  by (seed, epoch, clip ID) so that resuming an interrupted epoch (or
  changing ``num_workers``) gives the same crops; ``"center"``,
  ``"start"`` or ``"paper"`` (the paper code's seeded curation crop,
  :func:`dataset.audio.paper_crop_offset`) elsewhere (deterministic: the
  same numbers on every run).
- **Chunking** (long files at evaluation): every window of the clip, spread
  from its start to its end (:func:`audio_chunks`), for chunk-and-average.
- **Masking**: a file that cannot be read gives silence and ``ok=False``
  with the reason, so a batch keeps its shape and the caller leaves the row
  out and counts it, instead of the run ending.
"""

import hashlib
import math

import numpy as np
import torch

from dataset.audio import CROP_MODES, AudioReadError, fit_length, load_audio

__all__ = ["EVAL_CROPS", "item_seed", "EpochState", "audio_chunks", "AudioClips", "collate_audio"]

#: Deterministic crops, for evaluation and embedding extraction ("paper": the paper code's curation crop).
EVAL_CROPS = ("center", "start", "paper")


def item_seed(*parts):
    """A stable 63-bit seed from any printable parts (unlike ``hash``, same in every process).

    Example
    -------
    >>> item_seed(1, 2, "clip") == item_seed(1, 2, "clip")
    True
    >>> item_seed(1, 2, "clip") == item_seed(1, 3, "clip")
    False
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochState:
    """A mutable epoch number shared with the data pipeline (set before each epoch's loader starts)."""

    def __init__(self, epoch=0):
        self.epoch = epoch


def audio_chunks(wav, num_samples, max_chunks=None):
    """Cuts a waveform into ``num_samples`` windows that cover it (for chunk-and-average).

    A clip no longer than one window is tiled to it (one chunk). A longer one
    gives ``ceil(T / num_samples)`` windows (at most ``max_chunks``) spread
    evenly from the start to the end, so the last window ends at the last
    sample and no window is padded.

    Example
    -------
    >>> audio_chunks(torch.arange(10.0), 4).tolist()
    [[0.0, 1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0], [6.0, 7.0, 8.0, 9.0]]
    >>> audio_chunks(torch.arange(3.0), 4).tolist()
    [[0.0, 1.0, 2.0, 0.0]]
    """
    length = wav.shape[-1]
    if length <= num_samples:
        return fit_length(wav, num_samples, crop="start").unsqueeze(0)
    count = math.ceil(length / num_samples)
    if max_chunks:
        count = min(count, int(max_chunks))
    if count == 1:
        return fit_length(wav, num_samples, crop="center").unsqueeze(0)
    starts = np.linspace(0, length - num_samples, count).round().astype(np.int64)
    return torch.stack([wav[s : s + num_samples] for s in starts])


class AudioClips(torch.utils.data.Dataset):
    """Audio files as model input: one window per clip (tiled or cropped), or all windows of the clip.

    Arguments
    ---------
    paths : list of str, optional
        The files, when used as a ``Dataset`` over a path list
        (``clips[i]``); pipelines that read one row at a time call
        :meth:`load` and need none.
    sample_rate : int
        Model rate (audio is mixed to mono and resampled to it).
    duration : float
        Seconds the model sees at once.
    crop : str
        ``"random"`` (training), ``"center"``, ``"start"`` or ``"paper"``.
    chunking : bool
        Every window of the clip (:func:`audio_chunks`) instead of one crop.
    max_chunks : int, optional
        Cap on windows per clip when chunking.
    seed : int
        Seed of the random crops.
    epoch_state : EpochState, optional
        Epoch in the random crops' seed (training).

    Example
    -------
    >>> import os, tempfile, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(p, np.zeros(1200, "float32"), 8000)
    >>> clips = AudioClips([p, p + ".missing"], 8000, 0.1)
    >>> item = clips[0]
    >>> tuple(item["wav"].shape), item["ok"], clips[1]["ok"]
    ((1, 800), True, False)
    >>> wav, ok, error = AudioClips(None, 8000, 0.5, crop="random", seed=3).load(p, clip_id="a")
    >>> tuple(wav.shape), ok, error
    ((4000,), True, '')
    """

    def __init__(self, paths, sample_rate, duration, crop="center", chunking=False, max_chunks=None, seed=0,
                 epoch_state=None):
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}.")
        if chunking and crop == "random":
            raise ValueError("chunking covers the whole clip: it takes no random crop.")
        self.paths = list(paths) if paths is not None else []
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.num_samples = int(round(self.duration * self.sample_rate))
        self.crop = crop
        self.chunking = bool(chunking)
        self.max_chunks = max_chunks
        self.seed = seed
        self.epoch_state = epoch_state or EpochState()

    def __len__(self):
        return len(self.paths)

    def generator(self, clip_id):
        """The generator of a clip's random crop this epoch (None for deterministic crops)."""
        if self.crop != "random":
            return None
        return torch.Generator().manual_seed(item_seed(self.seed, self.epoch_state.epoch, clip_id))

    def load(self, path, clip_id=""):
        """One file as model input.

        Arguments
        ---------
        path : str
            The audio file.
        clip_id : str
            Its ID (part of the random crop's seed).

        Returns
        -------
        wav : torch.Tensor
            ``[num_samples]``, or ``[chunks, num_samples]`` when chunking;
            silence if the file cannot be read.
        ok : bool
            False when the file could not be read.
        error : str
            Why not ("" when ok).
        """
        try:
            if self.chunking:
                wav = audio_chunks(load_audio(path, self.sample_rate), self.num_samples, self.max_chunks)
            else:
                wav = load_audio(path, self.sample_rate, self.duration, crop=self.crop,
                                 generator=self.generator(clip_id))
            return wav, True, ""
        except (AudioReadError, ValueError, RuntimeError) as err:
            # Decoding failures of any kind: the clip is skipped, not the run.
            silence = torch.zeros(1, self.num_samples) if self.chunking else torch.zeros(self.num_samples)
            return silence, False, str(err)

    def __getitem__(self, index):
        """``{"index", "wav" [chunks, num_samples], "ok", "error"}`` of the ``index``-th path."""
        wav, ok, error = self.load(self.paths[index], clip_id=str(index))
        return {"index": index, "wav": wav if self.chunking else wav.unsqueeze(0), "ok": ok, "error": error}


def collate_audio(items):
    """Stacks the windows of a batch of :class:`AudioClips` items.

    Returns
    -------
    dict
        ``wav`` ``[total_chunks, T]``, ``counts`` (windows per clip), ``ok``
        (bool per clip), ``error`` (str per clip), ``index``.
    """
    return {
        "wav": torch.cat([it["wav"] for it in items]),
        "counts": torch.tensor([it["wav"].shape[0] for it in items]),
        "ok": torch.tensor([it["ok"] for it in items]),
        "error": [it["error"] for it in items],
        "index": [it["index"] for it in items],
    }
