"""Task kinds: what a task *is* (data schema, model with heads, evaluation, prediction, report).

The runner and the CLI only talk to the ``TaskKind`` interface.  Every module in this package is
imported here and registers its kind with ``@register_kind``: adding a kind is adding a file.
"""
import importlib
import pkgutil

from .base import KINDS, EvalOutput, Prepared, TaskKind, register_kind  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
