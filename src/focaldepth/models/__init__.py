"""The model zoo behind one registry.

>>> from focaldepth import models
>>> model = models.create("poolnet")            # random initialisation, nothing downloaded
>>> models.list_models(test_variants=False)      # full-size architectures
>>> models.save(model, "poolnet.pt", epoch=3)    # rebuilds itself: models.load("poolnet.pt")

Every model is a :class:`DepthModel`: ``forward(frames, focus_distance_m, camera)`` returns a
dict with ``"depth_m"`` (B, 1, H, W); ``model.info`` says what it consumes. Architectures:
``ddffnet`` (Hazirbas et al. 2018), ``lstm_ddff`` (the seed), ``recurrent_ae`` (Chaitanya et
al. 2017, as modified in the seed), ``poolnet`` (Aittala & Durand 2018, as modified in the
seed), ``defocusnet`` (Maximov et al. 2020), ``d3net`` (Carvalho et al. 2018), each with a
tiny ``*_test`` variant; encoder-decoder models take ``coc_decoder=True`` for a second decoder
predicting per-frame CoC maps (``"coc_px"``).
"""

import importlib
import pkgutil

from focaldepth.models.base import DepthModel, ModelInfo
from focaldepth.models.checkpoint import load, read_checkpoint, save
from focaldepth.models.registry import (
    create,
    get_spec,
    list_models,
    parameter_count,
    register_model,
)

# Every module of this package that defines models registers them when imported (the zoo's
# architectures and any other, e.g. the project's own SweepNet), so import them all.
_NOT_ARCHITECTURES = {"base", "registry", "checkpoint", "common"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_ARCHITECTURES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DepthModel",
    "ModelInfo",
    "create",
    "get_spec",
    "list_models",
    "load",
    "parameter_count",
    "read_checkpoint",
    "register_model",
    "save",
]
