"""Length ratio: mean over samples of len(prediction tokens) / len(reference tokens)."""
import datasets
import evaluate

_DESCRIPTION = (
    "Diagnostic for generation: per sample, the number of whitespace tokens (str.split) in the "
    "prediction divided by that of its reference, averaged over samples. With several references "
    "the first one is used. An empty reference counts as one token (no division by zero). "
    "1.0 is ideal; below 1 means too short (e.g. truncation), above 1 too long (e.g. rambling)."
)
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): reference(s) per sample; the first is used.
Returns:
    length_ratio (float): mean ratio, >= 0.
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


class LengthRatio(evaluate.Metric):
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
        ratios = []
        for pred, ref in zip(predictions, references):
            first = ref[0] if len(ref) else ""
            ratios.append(len(pred.split()) / max(1, len(first.split())))
        return {"length_ratio": sum(ratios) / len(ratios) if ratios else 0.0}
