"""Corpus chrF (sacrebleu), on the 0-100 scale."""
import sacrebleu

from mmsft.metrics.bases import TextMetric, reference_streams


class Chrf(TextMetric):
    DESCRIPTION = (
        "sacrebleu.corpus_chrf over all samples: character n-gram F-score (char_order=6, beta=2; "
        "word_order=0 is chrF, 2 is chrF++). Each sample may have one reference string or a list of "
        "them; missing ones are padded with None, which sacrebleu skips. Score is 0-100."
    )
    CITATION = "Popovic, 2015. chrF: character n-gram F-score for automatic MT evaluation."
    INPUTS = """    word_order (int, optional): 0 (chrF, default) or 2 (chrF++).
Returns:
    chrf (float): 0-100.
"""

    def _compute(self, predictions, references, word_order=0):
        result = sacrebleu.corpus_chrf(predictions, reference_streams(references), word_order=word_order)
        return {"chrf": float(result.score)}
