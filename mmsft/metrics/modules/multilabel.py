"""Multi-label scores over class score rows: mAP over classes and micro-F1 (config ``map`` / ``micro_f1``)."""
import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from mmsft.metrics.bases import ScoreRowMetric

CONFIGS = ("map", "micro_f1")


class MultiLabel(ScoreRowMetric):
    DESCRIPTION = ("Multi-label classification from per-class scores (probabilities): 'map' is the mean over "
                   "classes with at least one positive of sklearn's average precision; 'micro_f1' thresholds the "
                   "scores at 0.5 and pools every (sample, class) decision. Both 0-1.")
    INPUTS = """Returns:
    multilabel_map (float) or micro_f1 (float): 0-1.
"""

    def _compute(self, predictions, references):
        if self.config_name not in CONFIGS:
            raise ValueError(f"multilabel needs config_name in {CONFIGS}, got {self.config_name!r}")
        scores, truth = np.asarray(predictions, dtype=float), np.asarray(references, dtype=int)
        if scores.shape != truth.shape:
            raise ValueError(f"scores {scores.shape} and references {truth.shape} differ in shape")
        if self.config_name == "map":
            present = truth.sum(0) > 0
            aps = [average_precision_score(truth[:, k], scores[:, k]) for k in np.flatnonzero(present)]
            return {"multilabel_map": float(np.mean(aps)) if aps else 0.0}
        return {"micro_f1": float(f1_score(truth, scores >= 0.5, average="micro", zero_division=0))}
