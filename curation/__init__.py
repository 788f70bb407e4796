"""Unsupervised curation: similarity joins of teacher embeddings and the DU / DS / ADS pair sets they give.

May import ``models``, ``dataset``, ``experiment``, ``evaluation`` and
``embeddings`` (the embedding folders it joins); ``training``, ``inference``,
``pipeline`` and the recipes sit above it.

- :mod:`curation.join`: exact thresholded joins by blocked matrix products;
- :mod:`curation.builders`: the DU, DS and ADS pair CSVs, their summaries and
  the evaluation-overlap audit;
- :mod:`curation.paper_files` and :mod:`curation.paper_outputs`: the paper
  code's embedding files, read and written next to ours.
- :mod:`curation.report` (with :mod:`curation.report_render`, its HTML and
  Markdown, and :mod:`curation.svg`, its figures): the page a person opens to
  judge the curated sets (``python -m curation.report --emb_dir=DIR``);
- :mod:`curation.leakage`: evaluation clips found by content in training audio
  (decoded-audio hashes; teacher cosine confirmed by an aligned log-mel
  correlation), and :mod:`curation.audit`, the audit of training sets against
  evaluation sets (``python -m curation.audit``).
"""
