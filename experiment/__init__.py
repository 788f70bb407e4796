"""Run setup and model loading shared by every script.

- :mod:`experiment.arguments`: command line, run options, YAML loading, device;
- :mod:`experiment.checkpoints`: checkpoint selection (SpeechBrain's
  ``Checkpointer.find_checkpoint``), completeness, RNG recoverable;
- :mod:`experiment.weights`: the one way a model is built (from the hparams)
  and loaded (from the files the flags name).
- :mod:`experiment.lock`: one writer per output folder (a second run on a
  folder in use stops at once, naming the run that holds it).
- :mod:`experiment.aliases`: the paper code's YAML keys, translated to ours,
  honoured or ignored with a reason, before the overrides are checked.
"""
