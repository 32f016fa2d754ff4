"""Accuracy: fraction of integer predictions equal to the references (0-1)."""
from sklearn.metrics import accuracy_score

from mmsft.metrics.bases import ClassIdMetric


class Accuracy(ClassIdMetric):
    DESCRIPTION = "Accuracy = correct / total over integer class ids; returns {'accuracy': float in [0, 1]}."
    INPUTS = """Returns:
    accuracy (float): share of exact matches, 0-1.
"""

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}
