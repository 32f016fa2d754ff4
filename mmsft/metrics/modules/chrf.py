"""Corpus chrF (sacrebleu), on the 0-100 scale, with sacrebleu's signature (``chrf_signature``)."""
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
    chrf_signature (str): sacrebleu's signature (references, case, char / word orders, version).
"""

    def _compute(self, predictions, references, word_order=0):
        scorer = sacrebleu.CHRF(word_order=word_order)
        result = scorer.corpus_score(predictions, reference_streams(references))
        return {"chrf": float(result.score), "chrf_signature": scorer.get_signature().format()}
