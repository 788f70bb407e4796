"""Evaluation of CLAP models.

- :mod:`evaluation.zeroshot`: zero-shot classification (prompts, scoring,
  metrics through ``sklearn.metrics``, result files, validation during training);
- :mod:`evaluation.retrieval`: text↔audio retrieval (R@k, mAP@10, ranks; the
  Clotho and AudioCaps evaluation sets; result files).
"""
