"""SpeechBrain data pipelines: from caption manifests to batches of audio and text.

Manifests are read with the ``csv`` module and handed to ``DynamicItemDataset``
as a dict. SpeechBrain's own ``from_csv``/``from_json`` would rewrite
captions: ``from_csv`` substitutes ``$word`` and strips leading spaces,
``from_json`` formats ``{braces}``; captions contain all of these.

Training crops are random but reproducible: each clip's crop offset comes
from a private generator seeded by (seed, epoch, clip ID), not from the
global RNG, so resuming an interrupted epoch (or changing ``num_workers``)
gives the same crops as an uninterrupted run.
"""

import hashlib
import logging

import torch
import speechbrain as sb

from dataset.audio import AudioReadError, load_audio
from dataset.manifest import read_caption_csv

logger = logging.getLogger(__name__)


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


def load_or_silence(wav_path, sample_rate, duration, crop, generator=None):
    """``(waveform, True)``, or ``(silence, False)`` for a file that cannot be read.

    Used inside data pipelines so that a clip that broke after preparation is
    masked and counted by the caller instead of ending the epoch.

    Example
    -------
    >>> sig, ok = load_or_silence("/nonexistent.wav", 8000, 0.5, "center")
    >>> sig.shape, ok
    (torch.Size([4000]), False)
    """
    try:
        return load_audio(wav_path, sample_rate, duration, crop=crop, generator=generator), True
    except AudioReadError as err:
        logger.warning("Skipping unreadable audio (%s)", err)
        return torch.zeros(int(round(sample_rate * duration))), False


def rows_to_data(rows):
    """Turns manifest rows into the ``{ID: {field: value}}`` dict ``DynamicItemDataset`` takes."""
    data = {}
    for row in rows:
        fields = {k: v for k, v in row.items() if k != "ID"}
        data[row["ID"]] = fields
    return data


def caption_dataset(
    csv_path,
    sample_rate,
    duration,
    train,
    seed=1234,
    epoch_state=None,
    eval_crop="center",
):
    """Builds a ``DynamicItemDataset`` of (audio, caption) pairs from a caption CSV.

    Arguments
    ---------
    csv_path : str
        ``ID,wav_path,caption[,...]`` (or ``wav_path,caption``) manifest.
    sample_rate : int
        Model sample rate; audio is resampled to it.
    duration : float
        Seconds per example: shorter clips are tiled, longer ones cropped.
    train : bool
        Random crops (``True``) or the deterministic ``eval_crop``.
    seed : int
        Seed of the training crops.
    epoch_state : EpochState, optional
        Epoch used in the crop seed (training only).
    eval_crop : str
        ``"center"`` or ``"start"``.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Output keys ``id``, ``sig`` ([T] float), ``audio_ok`` (bool: the file
        was read), ``caption``, ``wav_path``.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> from dataset.manifest import write_csv
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros(800, "float32"), 8000)
    >>> write_csv(os.path.join(d, "m.csv"), [
    ...     {"ID": "a", "wav_path": os.path.join(d, "a.wav"), "caption": "quiet, {so} $quiet"},
    ...     {"ID": "b", "wav_path": os.path.join(d, "missing.wav"), "caption": "gone"}])
    >>> ds = caption_dataset(os.path.join(d, "m.csv"), 8000, 0.5, train=False)
    >>> ds[0]["sig"].shape, ds[0]["audio_ok"], ds[0]["caption"], ds[1]["audio_ok"]
    (torch.Size([4000]), True, 'quiet, {so} $quiet', False)
    """
    rows = read_caption_csv(csv_path)
    if not rows:
        raise ValueError(f"The caption manifest {csv_path} has no rows.")
    epoch_state = epoch_state or EpochState()
    dataset = sb.dataio.dataset.DynamicItemDataset(rows_to_data(rows))

    @sb.utils.data_pipeline.takes("id", "wav_path")
    @sb.utils.data_pipeline.provides("sig", "audio_ok")
    def audio_pipeline(clip_id, wav_path):
        if train:
            generator = torch.Generator().manual_seed(item_seed(seed, epoch_state.epoch, clip_id))
            crop = "random"
        else:
            generator, crop = None, eval_crop
        sig, ok = load_or_silence(wav_path, sample_rate, duration, crop, generator)
        yield sig
        yield ok

    sb.dataio.dataset.add_dynamic_item([dataset], audio_pipeline)
    sb.dataio.dataset.set_output_keys([dataset], ["id", "sig", "audio_ok", "caption", "wav_path"])
    return dataset
