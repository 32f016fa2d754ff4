"""Task kinds: what a task *is* (data schema, model with heads, evaluation, prediction, report).

The runner and the CLI only talk to the ``TaskKind`` interface; each kind registers itself.
"""
from .base import KINDS, TaskKind, Prepared, EvalOutput  # noqa: F401
from . import text_classification  # noqa: F401
