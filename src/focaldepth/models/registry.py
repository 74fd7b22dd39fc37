"""The model registry: every architecture is built by name, so configs, checkpoints and the
command line never import model classes.

A constructor (a class or a function returning a :class:`DepthModel`) registers itself under
one or more names, optionally with default arguments (how the tiny ``*_test`` variants are
made)::

    @register_model("mynet_test", widths=(4, 8))
    @register_model("mynet")
    class MyNet(DepthModel): ...

``create(name, **kwargs)`` builds it and records the complete constructor arguments on the
model (``model.arch_name``, ``model.arch_kwargs``) so :func:`focaldepth.models.save` can write
a checkpoint that rebuilds it without the user re-typing anything.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from focaldepth.errors import UserError
from focaldepth.models.base import DepthModel

Constructor = TypeVar("Constructor", bound=Callable[..., DepthModel])
TEST_SUFFIX = "_test"


@dataclass(frozen=True)
class ModelSpec:
    """One registered name: what builds it and with which default arguments."""

    name: str
    constructor: Callable[..., DepthModel]
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def is_test_variant(self) -> bool:
        """Tiny variants for tests are named ``<arch>_test``."""
        return self.name.endswith(TEST_SUFFIX)

    @property
    def summary(self) -> str:
        """First line of the constructor's docstring."""
        doc = inspect.getdoc(self.constructor) or ""
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, **defaults: Any) -> Callable[[Constructor], Constructor]:
    """Decorator registering a model constructor (class or function) under ``name``, with
    optional default keyword arguments. Registering a different constructor under a taken name
    is a programming error (ValueError); re-registering the same one (module reload) is fine."""
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"model names are lower-case letters, digits and '_', got {name!r}")

    def decorate(constructor: Constructor) -> Constructor:
        existing = _REGISTRY.get(name)
        if existing is not None and _qualname(existing.constructor) != _qualname(constructor):
            raise ValueError(
                f"model name {name!r} is already registered by {_qualname(existing.constructor)}"
            )
        _REGISTRY[name] = ModelSpec(name, constructor, dict(defaults))
        return constructor

    return decorate


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def list_models(test_variants: bool | None = None) -> list[str]:
    """Registered names, sorted. ``test_variants=True``: only the tiny ``*_test`` variants;
    ``False``: only full-size models; ``None``: all."""
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if test_variants is None or spec.is_test_variant == test_variants
    )


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; a UserError listing the valid names otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown model {name!r}{hint}; valid names: {', '.join(list_models())}")
    return spec


def accepted_arguments(name: str) -> list[str]:
    """Keyword arguments the constructor of ``name`` accepts."""
    signature = inspect.signature(get_spec(name).constructor)
    return [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def resolve_arguments(name: str, **kwargs: Any) -> dict[str, Any]:
    """The complete constructor arguments of ``create(name, **kwargs)``: the registry defaults,
    overridden by ``kwargs``, with every remaining constructor default filled in (so a
    checkpoint does not depend on defaults that may change later)."""
    spec = get_spec(name)
    merged = {**spec.defaults, **kwargs}
    signature = inspect.signature(spec.constructor)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        bound = signature.bind(**merged)
    except TypeError as error:
        raise UserError(
            f"model {name!r}: {error}; accepted arguments: {', '.join(accepted_arguments(name))}"
        ) from None
    if not takes_any:
        bound.apply_defaults()
    arguments = dict(bound.arguments)
    for p in signature.parameters.values():
        if p.kind == p.VAR_KEYWORD:  # flatten **kwargs of function constructors
            arguments.update(arguments.pop(p.name, {}))
    return arguments


def create(name: str, **kwargs: Any) -> DepthModel:
    """Build model ``name`` with random initialisation (nothing is downloaded). Unknown names
    or arguments raise a UserError that lists the valid ones. Build on the meta device
    (``with torch.device("meta"): create(...)``) to inspect a large model without memory."""
    spec = get_spec(name)
    arguments = resolve_arguments(name, **kwargs)
    model = spec.constructor(**arguments)
    if not isinstance(model, DepthModel):
        raise TypeError(
            f"constructor of {name!r} returned {type(model).__name__}, not a DepthModel"
        )
    # Plain attributes (not parameters or buffers): how to rebuild this model.
    model.arch_name = name
    model.arch_kwargs = arguments
    return model


def parameter_count(name: str, **kwargs: Any) -> int:
    """Number of trainable parameters of ``create(name, **kwargs)``, counted on the meta
    device: no memory is allocated, so full-size models are cheap to count."""
    with torch.device("meta"):
        model = create(name, **kwargs)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
