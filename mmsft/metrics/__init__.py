"""Offline metrics behind the Hugging Face ``evaluate`` interface.

Every metric is a local ``evaluate.Metric`` script in ``modules/<name>.py``; ``evaluate.load`` on a
file path never touches the network (hub names such as ``evaluate.load("accuracy")`` would), so
no offline environment variables are needed or set.

    from mmsft import metrics
    metrics.compute(["accuracy", "f1_macro"], predictions=[1, 0], references=[1, 1])
    # -> {'accuracy': 0.5, 'f1_macro': 0.333...}
    metrics.load("bleu").compute(predictions=["a b c"], references=[["a b c", "a c"]])
    metrics.primary_key("detection_map")  # -> 'map50_95', the key early stopping watches
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from ..registry import Registry

MODULES_DIR = Path(__file__).resolve().parent / "modules"

#: metric name -> absolute path of its evaluate script
METRICS: Registry[str] = Registry("metric")


@dataclass(frozen=True)
class MetricSpec:
    key: str  # the result key early stopping / logging should use
    higher_is_better: bool | None  # None: a diagnostic with no "better" direction
    predictions_from: str | None = None  # name of the ``compute`` extra fed in as predictions
    options: tuple[str, ...] = ()  # extras of ``compute`` forwarded to this metric


_SPECS: dict[str, MetricSpec] = {}
_LOADED: dict[str, Any] = {}


def _register(name: str, key: str | None = None, *, higher_is_better: bool | None = True,
              predictions_from: str | None = None, options: tuple[str, ...] = ()) -> None:
    path = MODULES_DIR / f"{name}.py"
    METRICS.add(name, str(path))
    _SPECS[name] = MetricSpec(key or name, higher_is_better, predictions_from, options)


_CLASSES = ("labels",)
_register("accuracy")
_register("f1_macro", options=_CLASSES)
_register("precision_macro", options=_CLASSES)
_register("recall_macro", options=_CLASSES)
_register("confusion_matrix", higher_is_better=None, options=_CLASSES)
_register("bleu", options=("tokenize", "lowercase"))
_register("chrf", options=("word_order",))
_register("rouge_l", options=("tokenizer",))
_register("exact_match")
_register("eos_rate", predictions_from="stopped_by_eos")
_register("length_ratio", higher_is_better=None)
_register("detection_map", "map50_95", options=("box_format",))


def spec(name: str) -> MetricSpec:
    METRICS.get(name)  # UserError with a suggestion for unknown names
    return _SPECS[name]


def primary_key(name: str) -> str:
    """The key of ``name``'s result to monitor, e.g. 'f1_macro' or 'map50_95' for detection_map."""
    return spec(name).key


def higher_is_better(name: str) -> bool | None:
    """True for scores to maximise; None for diagnostics (confusion_matrix, length_ratio)."""
    return spec(name).higher_is_better


def load(name: str, *, fresh: bool = False):
    """The ``evaluate`` module for ``name``, loaded once per process (``fresh=True``: a new one).

    A cached module keeps ``add_batch`` state until its next ``compute``; ask for ``fresh=True``
    when two loops accumulate the same metric at once.
    """
    path = METRICS.get(name)
    if not fresh and name in _LOADED:
        return _LOADED[name]
    import evaluate

    # keep_in_memory: no arrow cache files under ~/.cache for add_batch data.
    module = evaluate.load(path, keep_in_memory=True)
    if not fresh:
        _LOADED[name] = module
    return module


def compute(names: str | Iterable[str], predictions=None, references=None,
            **extra) -> dict[str, Any]:
    """Run each metric on the same data and merge their result dicts.

    ``extra`` carries inputs some metrics need (``stopped_by_eos=[bool, ...]`` for eos_rate) and
    options (``labels=[...]`` for the macro metrics, ``box_format=`` for detection_map); each metric
    receives only the extras it declares. Raises UserError for unknown names, a missing extra
    input, or data in the wrong shape for a metric.
    """
    names = [names] if isinstance(names, str) else list(names)
    specs = {name: spec(name) for name in names}  # validate every name before any work
    results: dict[str, Any] = {}
    for name, s in specs.items():
        preds = predictions
        if s.predictions_from is not None:
            if extra.get(s.predictions_from) is None:
                raise UserError(f"metric '{name}' needs {s.predictions_from}=[...] (one per sample)",
                                where="metrics")
            preds = extra[s.predictions_from]
        elif predictions is None or references is None:
            raise UserError(f"metric '{name}' needs both predictions and references", where="metrics")
        options = {k: extra[k] for k in s.options if extra.get(k) is not None}
        module = load(name)
        try:
            out = module.compute(predictions=preds, references=references, **options)
        except ValueError as exc:
            _LOADED.pop(name, None)  # a failed add_batch may leave half-written state behind
            raise UserError(str(exc).splitlines()[0] if str(exc) else repr(exc),
                            where=f"metric '{name}'") from exc
        results.update(out)
    return results


__all__ = ["METRICS", "MODULES_DIR", "MetricSpec", "compute", "higher_is_better", "load",
           "primary_key", "spec"]
