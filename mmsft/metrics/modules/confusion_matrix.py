"""Confusion matrix over integer class ids (scikit-learn), returned as a nested list."""
import datasets
import evaluate
from sklearn.metrics import confusion_matrix

_DESCRIPTION = (
    "Counts C[i][j] of samples whose true class is labels[i] and predicted class is labels[j]. "
    "Rows are true classes, columns predicted; `labels` defaults to the sorted union of seen ids."
)
_KWARGS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    labels (list of int, optional): row/column order (default: sorted ids seen in either input).
Returns:
    confusion_matrix (list of list of int): rows = true class, columns = predicted class.
    confusion_matrix_labels (list of int): the class id of each row/column.
"""


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        if labels is None:
            labels = sorted(set(int(x) for x in references) | set(int(x) for x in predictions))
        matrix = confusion_matrix(references, predictions, labels=labels)
        return {"confusion_matrix": matrix.tolist(), "confusion_matrix_labels": [int(x) for x in labels]}
