"""Task kinds: what a task *is* (data schema, heads, evaluation, prediction, report, data-check and
augmentation bindings), one package per kind.

The runner, the CLI, ``dataqc`` and ``augment`` only talk to the ``TaskKind`` interface.  Every
package here registers its kind with ``@register_kind`` on import: adding a kind is adding a package.
"""
import importlib
import pkgutil

from .base import EvalOutput, Prepared, TaskKind, register_kind, single_head  # noqa: F401
from ..registry import KINDS  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
