"""CLAP training shared by the teacher/student and SoftCLAP recipes.

- :mod:`training.brain`: :class:`CLAPBrain` (contrastive training, curated
  steps, zero-shot validation, checkpoints);
- :mod:`training.mixer`: :class:`CurationMixer`, which chooses curated or
  replay batches step by step, resumably;
- :mod:`training.schedule`: the optimizer (Adam or AdamW) and the learning-rate
  schedules (the paper code's per-epoch ReduceLROnPlateau, our per-step cosine);
- :mod:`training.run`: the recipes' data preparation and the canonical
  SpeechBrain sequence (parse, prepare, build the Brain, fit, evaluate);
- :mod:`training.curves`: where statistics go (file log, W&B, TensorBoard)
  and the per-epoch ``train_curves.png``.
"""
