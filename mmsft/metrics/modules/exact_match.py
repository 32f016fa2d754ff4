"""Exact match after stripping surrounding whitespace: fraction of samples in [0, 1]."""
from mmsft.metrics.bases import TextMetric


class ExactMatch(TextMetric):
    DESCRIPTION = (
        "A sample counts as a match when prediction.strip() equals any of its references after "
        ".strip(). Case and inner whitespace matter. Returns the share of matching samples, 0-1."
    )
    INPUTS = """Returns:
    exact_match (float): 0-1.
"""

    def _compute(self, predictions, references):
        hits = 0
        for pred, ref in zip(predictions, references):
            hits += any(pred.strip() == r.strip() for r in ref)
        return {"exact_match": hits / len(predictions) if predictions else 0.0}
