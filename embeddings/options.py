"""The options of the two entry points of :mod:`embeddings.extract`: how a set is embedded, and where.

The options that shape the rows (clip length, crop, chunking, batch size,
storage dtype, model and precision) are recorded in ``embeddings.json``
and checked before rows or shards are reused; the others (shard size,
workers, device, ranks, progress bar) only say how the work is done.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AudioEmbeddingOptions", "CaptionEmbeddingOptions"]


@dataclass(frozen=True)
class AudioEmbeddingOptions:
    """How :func:`embeddings.extract.embed_audio_files` embeds an audio path list.

    Arguments
    ---------
    sample_rate, duration, crop, chunking, max_chunks
        How a clip is read: see :class:`dataset.clips.AudioClips`.
    batch_size : int
        Clips per batch (and chunks per forward pass).
    shard_size : int
        Clips per shard (rounded up to a multiple of ``batch_size``).
    num_workers : int
        DataLoader workers.
    dtype : str
        ``"float16"`` or ``"float32"``: how the rows are stored.
    device : str
        Where the model runs.
    rank, world_size : int
        This process and the number of processes (shard k → rank k % world_size).
    progress : bool
        A tqdm bar (on rank 0).
    model_id : str
        :func:`embeddings.keys.model_fingerprint` of the model (recorded, and part of the resume check).
    precision : str
        ``fp32``, ``bf16`` or ``fp16``: the model's precision (:func:`models.precision.autocast`),
        recorded (when not fp32) and part of the resume check.
    protocol : str
        ``paper`` (our windows: ``crop``, ``chunking``, ``max_chunks``), or ``laion`` / ``msclap`` / ``hf``:
        the clips are read and fitted as that reference does (:mod:`evaluation.protocols`; ``duration`` is
        msclap's); recorded (when not ``paper``) and part of the resume check.
    hf_options : tuple, optional
        The ``hf`` protocol's processor options as ``(key, value)`` pairs.

    Example
    -------
    >>> options = AudioEmbeddingOptions(sample_rate=16000, duration=10.0)
    >>> options.crop, options.batch_size, options.shard_size, options.dtype
    ('center', 32, 4096, 'float16')
    """

    sample_rate: int
    duration: float
    crop: str = "center"
    chunking: bool = False
    max_chunks: int | None = None
    batch_size: int = 32
    shard_size: int = 4096
    num_workers: int = 0
    dtype: str = "float16"
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    model_id: str = ""
    precision: str = "fp32"
    protocol: str = "paper"
    hf_options: tuple = ()


@dataclass(frozen=True)
class CaptionEmbeddingOptions:
    """How :func:`embeddings.extract.embed_captions` embeds a caption table.

    Arguments
    ---------
    max_length : int
        Tokens kept of a caption.
    batch_size, shard_size, dtype, device, rank, world_size, progress, model_id, precision
        As for :class:`AudioEmbeddingOptions`.

    Example
    -------
    >>> options = CaptionEmbeddingOptions()
    >>> options.max_length, options.batch_size, options.shard_size, options.dtype
    (100, 256, 16384, 'float16')
    """

    max_length: int = 100
    batch_size: int = 256
    shard_size: int = 16384
    dtype: str = "float16"
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    model_id: str = ""
    precision: str = "fp32"
