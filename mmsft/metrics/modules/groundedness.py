"""Groundedness of generated replies against the retrieved passages and the input (0-1).

Two result sets from one script (evaluate's ``config_name``): "support" -- the shares of the replies'
content words, numbers and ``{{placeholders}}`` that occur in the sample's passages or its input --
and "hallucination" -- the share of placeholders that occur in neither.
"""
from mmsft.metrics.bases import TextMetric
from mmsft.metrics.grounding import evidence, units

_KINDS = ("words", "numbers", "placeholders")
_CONFIGS = ("support", "hallucination")


class Groundedness(TextMetric):
    DESCRIPTION = (
        "Counts, over all replies (micro-averaged), the content words (stop words dropped), numbers and Bitext-style "
        "{{placeholders}} of each reply that occur in its own evidence: the retrieved passages plus the input. "
        "A share with nothing to count is 1.0 (nothing unsupported); the hallucinated-placeholder rate with no "
        "placeholders is 0.0. References are not used (they are accepted so generic loops work)."
    )
    INPUTS = """    knowledge (list of list of str): the passages each sample retrieved (required).
    sources (list of str, optional): each sample's input text.
Returns:
    support: supported_content_share, supported_word_share, supported_number_share, supported_placeholder_share (0-1).
    hallucination: hallucinated_placeholder_rate (0-1).
"""

    def _info(self):
        if self.config_name not in _CONFIGS:
            raise ValueError(f"groundedness: config_name must be one of {', '.join(_CONFIGS)}; got {self.config_name!r}")
        return super()._info()

    def _compute(self, predictions, references=None, knowledge=None, sources=None):
        if knowledge is None or len(knowledge) != len(predictions):
            raise ValueError("groundedness needs knowledge=[[passage, ...], ...] with one list per prediction")
        sources = sources or [""] * len(predictions)
        found = {k: 0 for k in _KINDS}
        total = {k: 0 for k in _KINDS}
        for reply, passages, source in zip(predictions, knowledge, sources):
            support = evidence(list(passages), source)
            for kind, values in units(reply).items():
                total[kind] += len(values)
                found[kind] += sum(v in support[kind] for v in values)
        if self.config_name == "hallucination":
            n = total["placeholders"]
            return {"hallucinated_placeholder_rate": (n - found["placeholders"]) / n if n else 0.0}
        share = {k: found[k] / total[k] if total[k] else 1.0 for k in _KINDS}
        all_units = sum(total.values())
        return {"supported_content_share": sum(found.values()) / all_units if all_units else 1.0,
                "supported_word_share": share["words"], "supported_number_share": share["numbers"],
                "supported_placeholder_share": share["placeholders"]}
