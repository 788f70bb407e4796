"""The embedding step: an audio path list, or a caption table, into an embedding folder (:mod:`embeddings.store`).

- :func:`embed_audio_files`: the clips of a path list, each row keyed on its
  file (:mod:`embeddings.update`: unchanged files keep their rows, changed
  and new ones are embedded, those no longer listed dropped);
- :func:`embed_captions`: the distinct captions of a caption table.

Both embed in resumable shards (:mod:`embeddings.shards`), rank 0 merging
under ``torchrun``, and do nothing when ``embeddings.json`` says the folder
already holds what was asked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np

from dataset.clips import AudioClips, collate_audio
from dataset.disk import DiskFullError
from embeddings.encoders import TextItems, audio_batch_encoder, collate_texts, text_batch_encoder
from embeddings.keys import CACHE_KEY, list_digest, listing_digest, shared_file_keys
from embeddings.lists import write_caption_table
from embeddings.options import CaptionEmbeddingOptions
from embeddings.resume import LayoutItems, shard_layout
from embeddings.shards import embed_items, merge_shards, prepare_shard_dir, remove_shards, wait_for_ranks
from embeddings.store import AUDIO_EMB, AUDIO_SKIPPED, AUDIO_STAT, SHARD_DIR, load_embedding_info, update_info
from embeddings.update import commit_update, drop_old_version_shards, plan_update, stored_listing, write_update
from evaluation.protocols import protocol_reader

logger = logging.getLogger(__name__)

__all__ = ["embed_audio_files", "embed_captions"]


def _up_to_date(done, section, precision):
    """True when a recorded section has the same inputs and options (an absent precision is fp32)."""
    return bool(done) and {k: done.get(k) for k in section} == section and done.get("precision", "fp32") == precision


def embed_audio_files(model, paths, out_dir, options):
    """Embeds every clip of ``paths`` into ``out_dir/audio_emb.npy`` (+ ``audio_paths.txt``, ``audio_stat.npy``,
    ``audio_skipped.csv``).

    Each file is keyed on its path, size and modification time: when
    ``embeddings.json`` records the same options, a file whose key is
    unchanged keeps its row (or its place in ``audio_skipped.csv``), a changed
    or new file is embedded, a file no longer listed is dropped, and the log
    says how many of each. Nothing is done when nothing changed. A folder
    written without the keys (an older version) is embedded again. The
    embedding resumes from shards (:mod:`embeddings.shards`).

    Arguments
    ---------
    model : models.clap.CLAP
        The teacher (in eval mode on ``options.device``).
    paths : list of str
        Audio files; output rows keep this order (minus unreadable files).
    out_dir : str
        The embedding folder.
    options : embeddings.options.AudioEmbeddingOptions
        How the clips are read and embedded, where, and the model's fingerprint and precision.

    Returns
    -------
    dict
        The ``audio`` section of ``embeddings.json`` (counts, options; ``update``: the
        unchanged, changed, new and removed files of the last update), on every rank.
    """
    paths = list(paths)
    shard_dir = os.path.join(out_dir, SHARD_DIR)
    _finish_interrupted_update(out_dir, shard_dir, options)
    recorded = _recorded_audio_options(options)
    keys = shared_file_keys(paths, options.world_size, options.progress and options.rank == 0)
    files_digest = listing_digest(paths, keys)
    section = dict(recorded, items=len(paths), items_digest=list_digest(paths), cache_key=CACHE_KEY,
                   files_digest=files_digest)
    done = load_embedding_info(out_dir).get("audio")
    same_options = _up_to_date(done, recorded, options.precision)
    if (same_options and done.get("cache_key") == CACHE_KEY and done.get("files_digest") == files_digest
            and all(os.path.isfile(os.path.join(out_dir, n)) for n in (AUDIO_EMB, AUDIO_STAT))):
        # (a deleted audio_stat.npy is how a user asks for every clip again: docs/hardening.md)
        logger.info("Audio embeddings in %s are up to date (%d clips, every file unchanged); nothing to do.",
                    out_dir, done["rows"])
        if options.rank == 0:
            remove_shards(shard_dir, "audio")
        return done
    old = _reusable_listing(out_dir, done, recorded, same_options, options.precision, len(paths))
    reuse, counts = plan_update(paths, keys, old)
    todo = np.flatnonzero(reuse < 0)
    logger.info("Audio embeddings in %s: %d unchanged, %d changed (re-embedded), %d new, %d removed.",
                out_dir, counts["unchanged"], counts["changed"], counts["new"], counts["removed"])
    config = dict(recorded, cache_key=CACHE_KEY)
    for k in ("dtype", "batch_size"):  # added by prepare_shard_dir
        config.pop(k)
    if options.rank == 0:
        drop_old_version_shards(shard_dir)
    # The shards' items: todo, or an interrupted run's list whose gone files are dropped (embeddings.resume).
    layout = shard_layout(shard_dir, out_dir, config, todo, paths, keys, options)
    config.update(items=len(layout.paths), items_digest=layout.digest)
    prepare_shard_dir(shard_dir, "audio", config, options.dtype, options.batch_size, options.shard_size,
                      options.rank, options.world_size)
    model.eval()
    if options.protocol == "paper":
        dataset = AudioClips(layout.paths, options.sample_rate, options.duration, crop=options.crop,
                             chunking=options.chunking, max_chunks=options.max_chunks)
        collate, encode = collate_audio, audio_batch_encoder(model, options.device, options.batch_size,
                                                              options.precision)
    else:
        dataset, collate, encode = protocol_reader(model, layout.paths, options.protocol, options.sample_rate,
                                                   options.duration, options.device, options.precision,
                                                   hf_options=dict(options.hf_options))
    if (layout.owner < 0).any():
        dataset = LayoutItems(dataset, layout.owner)
    start = time.time()
    embed_items(
        dataset, collate, encode,
        shard_dir, "audio", options.batch_size, options.shard_size, dtype=options.dtype,
        num_workers=options.num_workers, rank=options.rank, world_size=options.world_size,
        progress=options.progress and options.rank == 0,
    )
    wait_for_ranks(options.world_size)
    if options.rank == 0:
        with _merging(shard_dir, "audio"):
            errors = write_update(out_dir, paths, keys, reuse, old, counts, section, options, layout.owner)
        logger.info(
            "Embedded %d files and kept %d: %d rows, %d unreadable (listed in %s), in %.0f s.",
            len(todo), counts["unchanged"], section["rows"], len(errors), AUDIO_SKIPPED, time.time() - start,
        )
        for i in sorted(errors)[:5]:
            logger.warning("Skipped %s: %s", paths[i], errors[i])
    wait_for_ranks(options.world_size)
    return load_embedding_info(out_dir).get("audio", section)


@contextlib.contextmanager
def _merging(shard_dir, name):
    """A full disk while the shards are merged says that they are all complete and kept."""
    try:
        yield
    except DiskFullError as err:
        err.kept = f"every '{name}' shard is complete in {shard_dir} and kept (a rerun only merges them)"
        raise


def _finish_interrupted_update(out_dir, shard_dir, options):
    """Rank 0 ends an update killed while moving its files into place (:func:`embeddings.update.commit_update`)."""
    if options.rank == 0 and os.path.isfile(os.path.join(shard_dir, "audio-next.json")):
        logger.info("Finishing the interrupted update of the audio embeddings in %s.", out_dir)
        commit_update(out_dir, shard_dir)
    wait_for_ranks(options.world_size)


def _recorded_audio_options(options):
    """The options recorded with the audio rows (``embeddings.json``): rows are reused only when they match."""
    recorded = {
        "model": options.model_id, "sample_rate": int(options.sample_rate), "duration": float(options.duration),
        "crop": options.crop, "chunking": bool(options.chunking),
        "max_chunks": options.max_chunks if options.chunking else None,
    }
    if options.precision != "fp32":  # fp32 files of earlier versions stay valid
        recorded["precision"] = options.precision
    if options.protocol != "paper":  # so do files of our windows
        recorded["protocol"] = options.protocol
    recorded.update(dtype=options.dtype, batch_size=options.batch_size)
    return recorded


def _reusable_listing(out_dir, done, recorded, same_options, precision, n_paths):
    """The stored listing whose unchanged files keep their rows, or None (the log says why none)."""
    old = None
    if same_options:
        old, reason = stored_listing(out_dir, done)
        if old is None:
            logger.info("The audio embeddings in %s cannot be reused: %s; embedding all %d clips again.",
                        out_dir, reason, n_paths)
    elif done:
        differ = [k for k in recorded if k != "precision" and done.get(k) != recorded[k]]
        if done.get("precision", "fp32") != precision:
            differ.append("precision")
        logger.info("The audio embeddings in %s were made with other options (%s); embedding all %d clips again.",
                    out_dir, ", ".join(differ), n_paths)
    return old


def embed_captions(model, tokenizer, table, out_dir, options=None, prefix="text"):
    """Embeds the captions of a caption table into ``<prefix>_emb.npy`` + ``<prefix>_captions.csv``.

    Same resuming and skipping rules (and ``precision``) as :func:`embed_audio_files`.

    Arguments
    ---------
    model : models.clap.CLAP
        The teacher (in eval mode on ``options.device``).
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    table : list of dict
        A caption table (:func:`embeddings.lists.caption_table`).
    out_dir : str
        The embedding folder.
    options : embeddings.options.CaptionEmbeddingOptions, optional
        How the captions are embedded and where (default: its defaults).
    prefix : str
        The name of the set in the folder (``text``: the training captions).

    Returns
    -------
    dict
        The ``<prefix>`` section of ``embeddings.json``.
    """
    options = CaptionEmbeddingOptions() if options is None else options
    rank, world_size = options.rank, options.world_size
    texts = [entry["caption"] for entry in table]
    config = {"items": len(texts), "items_digest": list_digest(texts), "model": options.model_id,
              "max_length": int(options.max_length)}
    if options.precision != "fp32":
        config["precision"] = options.precision
    section = dict(config, dtype=options.dtype, batch_size=options.batch_size)
    emb_path = os.path.join(out_dir, f"{prefix}_emb.npy")
    done = load_embedding_info(out_dir).get(prefix)
    if _up_to_date(done, section, options.precision) and os.path.isfile(emb_path):
        logger.info("Caption embeddings in %s are up to date (%d captions); nothing to do.", out_dir, done["rows"])
        return done
    shard_dir = os.path.join(out_dir, SHARD_DIR)
    prepare_shard_dir(shard_dir, prefix, config, options.dtype, options.batch_size, options.shard_size, rank,
                      world_size)
    model.eval()
    encode = text_batch_encoder(model, tokenizer, options.max_length, options.device, options.precision)
    embed_items(
        TextItems(texts), collate_texts, encode, shard_dir, prefix, options.batch_size, options.shard_size,
        dtype=options.dtype, num_workers=0, rank=rank, world_size=world_size, progress=options.progress and rank == 0,
    )
    wait_for_ranks(world_size)
    if rank == 0:
        with _merging(shard_dir, prefix):
            merge_shards(shard_dir, prefix, len(texts), options.shard_size, options.batch_size, emb_path)
            write_caption_table(os.path.join(out_dir, f"{prefix}_captions.csv"), table)
        section["rows"] = len(texts)
        update_info(out_dir, prefix, section)
        remove_shards(shard_dir, prefix)
        logger.info("Embedded %d distinct captions into %s.", len(texts), emb_path)
    wait_for_ranks(world_size)
    return load_embedding_info(out_dir).get(prefix, section)
