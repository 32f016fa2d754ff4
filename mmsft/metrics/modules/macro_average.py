"""Macro F1, precision or recall over integer class ids (scikit-learn, zero_division=0), in [0, 1].

One script for the three scores, which differ only in the scikit-learn function: pick one with
evaluate's ``config_name`` ("f1", "precision", "recall"); the result key is "<config>_macro".
"""
from sklearn.metrics import f1_score, precision_score, recall_score

from mmsft.metrics.bases import ClassIdMetric

_SCORES = {"f1": ("F1", f1_score), "precision": ("precision", precision_score),
           "recall": ("recall", recall_score)}  # config_name -> (word in the description, function)


class MacroAverage(ClassIdMetric):
    DESCRIPTION = (
        "Unweighted mean of per-class {label}. Classes are those seen in references or predictions, or the "
        "explicit `labels` list; a class with no predicted or true samples scores 0 (zero_division=0)."
    )
    INPUTS = """    labels (list of int, optional): the class ids to average over (default: all seen).
Returns:
    {score}_macro (float): 0-1.
"""

    def _info(self):
        if self.config_name not in _SCORES:
            raise ValueError(f"macro_average: config_name must be one of {', '.join(_SCORES)}; "
                             f"got {self.config_name!r}")
        info = super()._info()
        info.description = self.DESCRIPTION.format(label=_SCORES[self.config_name][0])
        info.inputs_description = info.inputs_description.format(score=self.config_name)
        return info

    def _compute(self, predictions, references, labels=None):
        scorer = _SCORES[self.config_name][1]
        score = scorer(references, predictions, labels=labels, average="macro", zero_division=0)
        return {f"{self.config_name}_macro": float(score)}
