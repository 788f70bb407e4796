"""Embedding folders: resumable, sharded, byte-reproducible ``.npy`` matrices of clips and captions.

Used by the curation steps, the retrieval evaluation, the faiss index and
the Python API. May import ``models``, ``dataset``, ``experiment`` and
``evaluation``; it uses ``models`` and ``dataset`` only. ``curation``,
``inference`` and the recipes import it.

- :mod:`embeddings.extract`: the embedding step, :func:`~embeddings.extract.embed_audio_files`
  and :func:`~embeddings.extract.embed_captions`, with their options
  (:mod:`embeddings.options`);
- :mod:`embeddings.store`: the files of an embedding folder, ``embeddings.json``,
  atomic writers, and the loaders of its audio and caption sets;
- :mod:`embeddings.lists`: audio path lists and caption tables;
- :mod:`embeddings.keys`: model fingerprints, list digests, the files' size and
  modification time that audio rows are keyed on;
- :mod:`embeddings.update`: which stored audio rows still hold, and the update
  that keeps them;
- :mod:`embeddings.shards`: the embedding loop over resumable shards, and their merge;
- :mod:`embeddings.encoders`: a batch of clips or texts through the model.
"""
