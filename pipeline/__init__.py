"""The toy pipeline of ``recipes/toy_pipeline.py``: the paper's method end to end on the toy world.

- :mod:`pipeline.stages`: a resumable runner of dependent commands;
- :mod:`pipeline.toy`: the stages of one training seed;
- :mod:`pipeline.results`: the results table, CSVs and chart.
"""
