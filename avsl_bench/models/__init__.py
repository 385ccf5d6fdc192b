"""Localization methods (one module per family) and the method registry.

    >>> from avsl_bench.models import method_registry, build_model
    >>> method_registry().names()
    ['dmc', 'dmt', 'ezvsl', 'jsa', 'slavc', 'xpl']

`center_prior` (§3.1) and `ogl` (§3.2, §2.4) need no training and are not registered methods.
"""

from __future__ import annotations

from functools import lru_cache

from ..registry import Registry
from .base import AVModel, MethodEntry

__all__ = ["method_registry", "get_method", "build_model", "AVModel", "MethodEntry"]

#: Family modules holding one `ENTRY` each; adding a method = adding its module here.
_FAMILIES = ("ezvsl", "slavc", "jsa", "dmc", "dmt", "xpl")


@lru_cache(maxsize=1)
def method_registry() -> Registry[MethodEntry]:
    """The trainable methods, by name."""
    import importlib

    registry: Registry[MethodEntry] = Registry("method")
    for module in _FAMILIES:
        entry = importlib.import_module(f"{__name__}.{module}").ENTRY
        registry.add(entry.name, entry)
    return registry


def get_method(name: str) -> MethodEntry:
    """A registered method (unknown names raise UnknownNameError with suggestions)."""
    return method_registry().get(name)


def build_model(method: str, model_cfg, *, audio_in_bins: int = 64) -> AVModel:
    """Construct a method's model from its `[model]` config (a `MethodEntry.config_cls` instance)."""
    entry = get_method(method)
    if not isinstance(model_cfg, entry.config_cls):
        raise TypeError(f"{method} needs a {entry.config_cls.__name__}, got {type(model_cfg).__name__}")
    return entry.build(model_cfg, audio_in_bins=audio_in_bins)
