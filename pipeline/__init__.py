"""The toy pipeline of ``recipes/toy_pipeline.py``: the paper's method end to end on the toy world.

The top layer: it may import every other package, but runs the recipes as
commands and imports only ``dataset`` and ``experiment``.

- :mod:`pipeline.stages`: a resumable runner of dependent commands;
- :mod:`pipeline.launch`: where those commands run (subprocess, submitit / SLURM job, torchrun);
- :mod:`pipeline.toy`: the stages of one training seed;
- :mod:`pipeline.results`: the results table, CSVs and chart;
- :mod:`pipeline.intervals`: bootstrap intervals of the table's accuracies.
"""
