"""Run setup and model loading shared by every script.

- :mod:`experiment.command_line`: a recipe's command line read once, the
  YAML read once: ``--model`` presets, the paper code's keys, the output
  folder, the checks, hyperpyyaml, DDP (``setup``);
- :mod:`experiment.usage`: what ``--help`` prints (run command, run options,
  the YAML's keys with their defaults and comments);
- :mod:`experiment.paper_keys` and :mod:`experiment.key_tables`: tables of
  keys (the paper code's names of ours; ranges, choices, input files);
- :mod:`experiment.checks`: the overrides checked against the YAML;
- :mod:`experiment.runtime`: device, rank, precision, CPU fallbacks;
- :mod:`experiment.checkpoints`: checkpoint selection (SpeechBrain's
  ``Checkpointer.find_checkpoint``), completeness, RNG recoverable;
- :mod:`experiment.weights`: the one way a model is built (from the hparams)
  and loaded (from the files the flags name).
- :mod:`experiment.lock`: one writer per output folder (a second run on a
  folder in use stops at once, naming the run that holds it).
- :mod:`experiment.safety`: weights-only loading; :mod:`experiment.quiet`:
  third-party start-up noise kept from the user (installed here, on import).
"""

from experiment.quiet import quiet_third_party

quiet_third_party()
