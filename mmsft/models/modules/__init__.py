"""Modules between backbone and heads, one file per module type, each registered in ``MODULES``
on import (this package is the registry's location): adding a module type is adding a file."""
import importlib
import pkgutil

from .base import ModelModule, ModuleContext, build_modules  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
