"""SpeechBrain data pipelines: from caption manifests to batches of audio and text.

Manifests are read with the ``csv`` module and handed to ``DynamicItemDataset``
as a dict. SpeechBrain's own ``from_csv``/``from_json`` would rewrite
captions: ``from_csv`` substitutes ``$word`` and strips leading spaces,
``from_json`` formats ``{braces}``; captions contain all of these.

Audio is read by :class:`dataset.clips.AudioClips` (tiling, cropping,
masking of unreadable files): training crops are random but reproducible
(seeded by seed, epoch and clip ID), evaluation crops deterministic.
"""

import logging

import speechbrain as sb

from dataset.clips import EVAL_CROPS, AudioClips, EpochState
from dataset.manifest import read_caption_csv, read_csv

logger = logging.getLogger(__name__)

__all__ = ["rows_to_data", "caption_dataset", "labelled_dataset", "EpochState"]


def _audio_pipeline(clips):
    """The ``(id, wav_path) -> (sig, audio_ok)`` item of a pipeline reading with ``clips``."""

    @sb.utils.data_pipeline.takes("id", "wav_path")
    @sb.utils.data_pipeline.provides("sig", "audio_ok")
    def audio_pipeline(clip_id, wav_path):
        # A clip that broke after preparation is masked and counted by the caller, never a crash.
        sig, ok, error = clips.load(wav_path, clip_id)
        if not ok:
            logger.warning("Skipping unreadable audio (%s)", error)
        yield sig
        yield ok

    return audio_pipeline


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
        ``"center"``, ``"start"`` or ``"paper"`` (:data:`dataset.clips.EVAL_CROPS`).

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
    clips = AudioClips(None, sample_rate, duration, crop="random" if train else eval_crop, seed=seed,
                       epoch_state=epoch_state)
    dataset = sb.dataio.dataset.DynamicItemDataset(rows_to_data(rows))
    sb.dataio.dataset.add_dynamic_item([dataset], _audio_pipeline(clips))
    sb.dataio.dataset.set_output_keys([dataset], ["id", "sig", "audio_ok", "caption", "wav_path"])
    return dataset


def labelled_dataset(csv_path, sample_rate, duration, eval_crop="center"):
    """A ``DynamicItemDataset`` of the clips of a zero-shot manifest, fitted to ``duration`` deterministically.

    Arguments
    ---------
    csv_path : str
        ``ID,wav_path,class_name,fold[,source_id]`` manifest (from ``dataset.prepare_zeroshot``).
    sample_rate : int
        Model sample rate.
    duration : float
        Seconds per clip: shorter clips are tiled, longer ones cropped.
    eval_crop : str
        ``"center"``, ``"start"`` or ``"paper"``: where a longer clip is cropped (never at random).

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Output keys ``id``, ``sig``, ``audio_ok`` (False: unreadable, to be
        skipped), ``class_name``, ``fold``, ``wav_path``.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> from dataset.manifest import write_csv
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros((300, 2)), 8000)
    >>> write_csv(os.path.join(d, "m.csv"), [
    ...     {"ID": "a", "wav_path": os.path.join(d, "a.wav"), "class_name": "dog", "fold": "1"},
    ...     {"ID": "b", "wav_path": os.path.join(d, "gone.wav"), "class_name": "rain", "fold": "2"}])
    >>> ds = labelled_dataset(os.path.join(d, "m.csv"), 8000, 0.5)
    >>> ds[0]["sig"].shape, ds[0]["audio_ok"], ds[1]["audio_ok"], ds[1]["fold"]
    (torch.Size([4000]), True, False, '2')
    """
    if eval_crop not in EVAL_CROPS:
        raise ValueError(f"eval_crop must be one of {EVAL_CROPS} (evaluation is deterministic), got {eval_crop!r}.")
    rows = read_csv(csv_path)
    if not rows:
        raise ValueError(f"The zero-shot manifest {csv_path} has no rows.")
    missing = {"ID", "wav_path", "class_name", "fold"} - set(rows[0])
    if missing:
        raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}; expected ID,wav_path,class_name,fold.")
    dataset = sb.dataio.dataset.DynamicItemDataset(rows_to_data(rows))
    sb.dataio.dataset.add_dynamic_item([dataset], _audio_pipeline(AudioClips(None, sample_rate, duration, eval_crop)))
    sb.dataio.dataset.set_output_keys([dataset], ["id", "sig", "audio_ok", "class_name", "fold", "wav_path"])
    return dataset
