"""Evaluation of depth models on held-out data (``focaldepth evaluate``, entry point
:func:`focaldepth.evaluate.evaluate`), one module per concern:

* :mod:`focaldepth.evaluation.models` — checkpoint argument -> model under test; any model as a
  predictor on full frames (padding, tiling);
* :mod:`focaldepth.evaluation.data` — test sets (generated folders, ``NAME:PATH`` adapters),
  consecutive windows, scene depth ranges, predict's optical-flow alignment;
* :mod:`focaldepth.evaluation.loop` — the accuracy pass and the temporal pass;
* :mod:`focaldepth.evaluation.report` — metrics.json, metrics.md, per_sequence.csv and plots.

Each imports only the ones above it (data -> models, loop -> data, report -> loop).
"""
