"""Length ratio: mean over samples of len(prediction tokens) / len(reference tokens)."""
from mmsft.metrics.bases import TextMetric


class LengthRatio(TextMetric):
    DESCRIPTION = (
        "Diagnostic for generation: per sample, the number of whitespace tokens (str.split) in the "
        "prediction divided by that of its reference, averaged over samples. With several references "
        "the first one is used. An empty reference counts as one token (no division by zero). "
        "1.0 is ideal; below 1 means too short (e.g. truncation), above 1 too long (e.g. rambling)."
    )
    ARGS = TextMetric.ARGS.replace("one or more references per sample.",
                                   "reference(s) per sample; the first is used.")
    INPUTS = """Returns:
    length_ratio (float): mean ratio, >= 0.
"""

    def _compute(self, predictions, references):
        ratios = []
        for pred, ref in zip(predictions, references):
            first = ref[0] if len(ref) else ""
            ratios.append(len(pred.split()) / max(1, len(first.split())))
        return {"length_ratio": sum(ratios) / len(ratios) if ratios else 0.0}
