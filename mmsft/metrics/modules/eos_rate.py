"""EOS rate: share of generations that stopped on an EOS token before the length limit (0-1)."""
import datasets

from mmsft.metrics.bases import BaseMetric


class EosRate(BaseMetric):
    FEATURES = datasets.Features({"predictions": datasets.Value("bool")})
    DESCRIPTION = (
        "Diagnostic for generation: the fraction of samples whose decoding ended because the model "
        "emitted EOS (True) rather than hitting max_new_tokens (False). A low rate means answers are "
        "being truncated or the model never learnt to stop. The per-sample flags are passed as "
        "`predictions`; `references` is not a feature of this metric and is ignored when given "
        "(evaluate drops inputs that are not features), so generic add_batch(predictions=, "
        "references=) loops still work once predictions are the flags."
    )
    INPUTS = """
Args:
    predictions (list of bool): per sample, True if generation stopped by EOS.
    references: ignored (optional).
Returns:
    eos_rate (float): 0-1.
"""

    def _compute(self, predictions):
        return {"eos_rate": sum(bool(p) for p in predictions) / len(predictions) if predictions else 0.0}
