"""Macro precision over integer class ids (scikit-learn, zero_division=0), in [0, 1]."""
import datasets
import evaluate
from sklearn.metrics import precision_score

_DESCRIPTION = (
    "Unweighted mean of per-class precision. Classes are those seen in references or predictions, or the "
    "explicit `labels` list; a class with no predicted or true samples scores 0 (zero_division=0)."
)
_KWARGS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    labels (list of int, optional): the class ids to average over (default: all seen).
Returns:
    precision_macro (float): 0-1.
"""


class PrecisionMacro(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        score = precision_score(references, predictions, labels=labels, average="macro", zero_division=0)
        return {"precision_macro": float(score)}
