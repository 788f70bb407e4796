"""Inference with a trained CLAP: embeddings, zero-shot labels, text-to-audio search.

- :mod:`inference.embedder`: :class:`ClapEmbedder`, the Python API;
- :mod:`inference.index`: the faiss index of ``recipes/build_index.py`` and
  ``recipes/search.py``.
"""

from inference.embedder import ClapEmbedder

__all__ = ["ClapEmbedder"]
