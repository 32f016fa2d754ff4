"""Shared bases of the evaluate scripts in ``modules/``, so each script holds only its own maths.

Why a real module: ``evaluate.load(path)`` copies a script alone into its cache folder, so a
relative import could not follow it; an absolute ``from mmsft.metrics.bases import ...`` is a
library import, which evaluate accepts once ``import mmsft`` works (it does for the installed
package). Why abstract: evaluate takes the first non-abstract ``EvaluationModule`` subclass it
finds in a script's namespace, and an imported base comes before the script's own class.
"""
from __future__ import annotations

import abc

import datasets
import evaluate


class BaseMetric(evaluate.Metric, abc.ABC):
    """An ``evaluate.Metric`` whose info comes from class attributes.

    Subclasses set ``FEATURES`` and ``DESCRIPTION`` (``CITATION`` optional), write ``INPUTS``
    (their options and Returns, appended to the base's ``ARGS``) and implement ``_compute``.
    Upper-case names: ``description``, ``features`` ... are evaluate's read-only properties.
    """

    FEATURES: datasets.Features
    DESCRIPTION = ""
    CITATION = ""
    ARGS = ""  # the predictions/references lines shared by every metric of a base
    INPUTS = ""

    def _info(self):
        return evaluate.MetricInfo(description=self.DESCRIPTION, citation=self.CITATION,
                                   inputs_description=self.ARGS + self.INPUTS,
                                   features=self.FEATURES)

    @abc.abstractmethod
    def _compute(self, predictions, references=None, **options):
        """The result dict for all samples added so far."""


class ClassIdMetric(BaseMetric):
    """Integer class ids in, as predictions and references (classification scores)."""

    FEATURES = datasets.Features({"predictions": datasets.Value("int64"),
                                  "references": datasets.Value("int64")})
    ARGS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
"""


def _as_lists(references):
    # A bare string reference becomes [string]. Done before evaluate encodes the batch: evaluate
    # only type-checks a column's first item, so a str after a list would be split into chars.
    if references is None:
        return None
    return [[r] if isinstance(r, str) else list(r) for r in references]


def reference_streams(references):
    """Per-sample reference lists -> sacrebleu's streams (i-th reference of every sample),
    padded with None where a sample has fewer references (sacrebleu skips None)."""
    n = max((len(r) for r in references), default=1)
    return [[r[i] if i < len(r) else None for r in references] for i in range(n)]


_STRING = datasets.Value("string", id="sequence")


class TextMetric(BaseMetric):
    """Generated strings in; each sample has one reference string or a list of them.

    ``_compute`` always receives ``references`` as a list of lists of strings.
    """

    FEATURES = datasets.Features({"predictions": _STRING,
                                  "references": datasets.Sequence(_STRING, id="references")})
    ARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): one or more references per sample.
"""

    # evaluate appends inputs_description to these docstrings, so they must exist.
    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch; a bare string reference is taken as a one-reference list."""
        super().add_batch(predictions=predictions, references=_as_lists(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one sample; a bare string reference is taken as a one-reference list."""
        reference = [reference] if isinstance(reference, str) else reference
        super().add(prediction=prediction, reference=reference, **kwargs)


class ScoreRowMetric(BaseMetric):
    """One row of float scores per sample (class scores, or a query's similarity to every candidate)
    against integer references: a multi-hot row (multi-label) or a candidate index (retrieval)."""

    FEATURES = datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                  "references": datasets.Sequence(datasets.Value("int64"))})
    ARGS = """
Args:
    predictions (list of list of float): per sample, a score for every class / candidate.
    references (list of list of int): per sample, a multi-hot row, or the index(es) of its true candidate(s).
"""


__all__ = ["BaseMetric", "ClassIdMetric", "ScoreRowMetric", "TextMetric", "reference_streams"]
