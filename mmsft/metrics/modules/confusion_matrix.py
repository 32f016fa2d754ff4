"""Confusion matrix over integer class ids (scikit-learn), returned as a nested list."""
from sklearn.metrics import confusion_matrix

from mmsft.metrics.bases import ClassIdMetric


class ConfusionMatrix(ClassIdMetric):
    DESCRIPTION = (
        "Counts C[i][j] of samples whose true class is labels[i] and predicted class is labels[j]. "
        "Rows are true classes, columns predicted; `labels` defaults to the sorted union of seen ids."
    )
    INPUTS = """    labels (list of int, optional): row/column order (default: sorted ids seen in either input).
Returns:
    confusion_matrix (list of list of int): rows = true class, columns = predicted class.
    confusion_matrix_labels (list of int): the class id of each row/column.
"""

    def _compute(self, predictions, references, labels=None):
        if labels is None:
            labels = sorted(set(int(x) for x in references) | set(int(x) for x in predictions))
        matrix = confusion_matrix(references, predictions, labels=labels)
        return {"confusion_matrix": matrix.tolist(), "confusion_matrix_labels": [int(x) for x in labels]}
