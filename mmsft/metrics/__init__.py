"""Offline metrics behind the Hugging Face ``evaluate`` interface.

Every metric is a local ``evaluate.Metric`` script in ``modules/`` (one script may serve several
names through evaluate's ``config_name``); ``evaluate.load`` on a file path never touches the
network (hub names such as ``evaluate.load("accuracy")`` would), so no offline environment
variables are needed or set.

    from mmsft import metrics
    metrics.compute(["accuracy", "f1_macro"], predictions=[1, 0], references=[1, 1])
    # -> {'accuracy': 0.5, 'f1_macro': 0.333...}
    metrics.load("bleu").compute(predictions=["a b c"], references=[["a b c", "a c"]])
    metrics.primary_key("detection_map")  # -> 'map50_95', the key early stopping watches
    metrics.result_keys(["accuracy", "confusion_matrix"])  # -> ['accuracy'], the scalar keys

The scripts share their evaluate plumbing through ``mmsft.metrics.bases`` (``TextMetric``,
``ClassIdMetric``); f1_macro, precision_macro and recall_macro are one script, ``macro_average``,
loaded with evaluate's ``config_name`` "f1", "precision" or "recall".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from ..registry import Registry

MODULES_DIR = Path(__file__).resolve().parent / "modules"

#: metric name -> absolute path of its evaluate script (its ``config_name`` is in ``spec(name)``)
METRICS: Registry[str] = Registry("metric")


@dataclass(frozen=True)
class MetricSpec:
    key: str  # the result key early stopping / logging should use
    higher_is_better: bool | None  # None: a diagnostic with no "better" direction
    predictions_from: str | None = None  # name of the ``compute`` extra fed in as predictions
    options: tuple[str, ...] = ()  # extras of ``compute`` forwarded to this metric
    keys: tuple[str, ...] = ()  # every scalar (int/float) key of the result, in result order
    config_name: str | None = None  # evaluate's config_name for the script (None: its default)
    inputs: str = "class_ids"  # what it scores: class_ids | text | boxes (a task kind takes the metrics of what it predicts)


_SPECS: dict[str, MetricSpec] = {}
_LOADED: dict[str, Any] = {}


def _register(name: str, key: str | None = None, *, higher_is_better: bool | None = True,
              predictions_from: str | None = None, options: tuple[str, ...] = (),
              keys: tuple[str, ...] | None = None, script: str | None = None,
              config_name: str | None = None, inputs: str = "class_ids") -> None:
    """``keys`` defaults to the primary key alone; ``script`` (a stem in modules/) to ``name``."""
    METRICS.add(name, str(MODULES_DIR / f"{script or name}.py"))
    key = key or name
    _SPECS[name] = MetricSpec(key, higher_is_better, predictions_from, options,
                              (key,) if keys is None else keys, config_name, inputs)


_CLASSES = ("labels",)
_register("accuracy")
for _score in ("f1", "precision", "recall"):
    _register(f"{_score}_macro", options=_CLASSES, script="macro_average", config_name=_score)
_register("confusion_matrix", higher_is_better=None, options=_CLASSES, keys=())
_register("bleu", options=("tokenize", "lowercase", "language"), inputs="text")  # language: the target language picks the tokenizer
_register("chrf", options=("word_order",), inputs="text")
_register("rouge_l", options=("tokenizer",), inputs="text")
_register("exact_match", inputs="text")
_register("eos_rate", predictions_from="stopped_by_eos", inputs="text")
_register("length_ratio", higher_is_better=None, inputs="text")
_KNOWLEDGE = ("knowledge", "sources")  # the passages each sample retrieved, and its input
_register("groundedness", "supported_content_share", options=_KNOWLEDGE, config_name="support", inputs="text",
          keys=("supported_content_share", "supported_word_share", "supported_number_share", "supported_placeholder_share"))
_register("hallucinated_placeholders", "hallucinated_placeholder_rate", higher_is_better=False, options=_KNOWLEDGE,
          script="groundedness", config_name="hallucination", inputs="text")
_register("knowledge_f1", options=("knowledge",), inputs="text")
_register("detection_map", "map50_95", options=("box_format",), keys=("map50", "map50_95"), inputs="boxes")
_register("multilabel_map", script="multilabel", config_name="map", inputs="multilabel")
_register("micro_f1", script="multilabel", config_name="micro_f1", inputs="multilabel")
_register("retrieval_recall", "r_mean", inputs="similarity",
          keys=tuple(f"r{k}_{d}" for d in ("t2i", "i2t") for k in (1, 5, 10)) + ("r_mean",))


def metrics_for(inputs: str) -> tuple[str, ...]:
    """The metrics that score ``inputs`` (class_ids, text, boxes), in registration order."""
    return tuple(name for name, s in _SPECS.items() if s.inputs == inputs)


def spec(name: str) -> MetricSpec:
    METRICS.get(name)  # UserError with a suggestion for unknown names
    return _SPECS[name]


def primary_key(name: str) -> str:
    """The key of ``name``'s result to monitor, e.g. 'f1_macro' or 'map50_95' for detection_map."""
    return spec(name).key


def higher_is_better(name: str) -> bool | None:
    """True for scores to maximise; None for diagnostics (confusion_matrix, length_ratio)."""
    return spec(name).higher_is_better


def key_direction(key: str) -> bool | None:
    """Whether a higher value of result key ``key`` is better (True), worse (False: ``loss``), or has
    no direction (None: diagnostics, unknown keys) -- what ``early_stopping.mode: auto`` follows."""
    if key == "loss":
        return False
    for metric_spec in _SPECS.values():
        if key in metric_spec.keys:
            return metric_spec.higher_is_better
    return None


def _names(names: str | Iterable[str]) -> list[str]:
    """One name or many -> the distinct names in order, each checked (UserError for unknowns)."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        spec(name)
    return list(dict.fromkeys(names))


def result_keys(names: str | Iterable[str]) -> list[str]:
    """The scalar (int/float) keys ``compute(names, ...)`` returns, in order, without computing.

    What a setting such as ``train.early_stopping.metric`` may name for a task's metrics, e.g.
    ``result_keys(["accuracy", "confusion_matrix"]) == ["accuracy"]``. UserError for unknown names.
    """
    return list(dict.fromkeys(key for name in _names(names) for key in spec(name).keys))


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
    module = evaluate.load(path, config_name=_SPECS[name].config_name, keep_in_memory=True)
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
    specs = {name: spec(name) for name in _names(names)}  # validate every name before any work
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


__all__ = ["METRICS", "MODULES_DIR", "MetricSpec", "compute", "higher_is_better", "key_direction", "load", "metrics_for",
           "primary_key", "result_keys", "spec"]
