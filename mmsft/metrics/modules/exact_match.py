"""Exact match after stripping surrounding whitespace: fraction of samples in [0, 1]."""
import datasets
import evaluate

_DESCRIPTION = (
    "A sample counts as a match when prediction.strip() equals any of its references after "
    ".strip(). Case and inner whitespace matter. Returns the share of matching samples, 0-1."
)
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): one or more references per sample.
Returns:
    exact_match (float): 0-1.
"""

_STRING = datasets.Value("string", id="sequence")
_FEATURES = datasets.Features({"predictions": _STRING,
                               "references": datasets.Sequence(_STRING, id="references")})


def _as_lists(references):
    # A bare string reference becomes [string]. Done before evaluate encodes the batch: evaluate
    # only type-checks a column's first item, so a str after a list would be split into chars.
    if references is None:
        return None
    return [[r] if isinstance(r, str) else list(r) for r in references]


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=_FEATURES,
        )

    # evaluate appends inputs_description to these docstrings, so they must exist.
    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch; a bare string reference is taken as a one-reference list."""
        super().add_batch(predictions=predictions, references=_as_lists(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one sample; a bare string reference is taken as a one-reference list."""
        reference = [reference] if isinstance(reference, str) else reference
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references):
        hits = 0
        for pred, ref in zip(predictions, references):
            hits += any(pred.strip() == r.strip() for r in ref)
        return {"exact_match": hits / len(predictions) if predictions else 0.0}
