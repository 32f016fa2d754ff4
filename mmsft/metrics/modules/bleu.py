"""Corpus BLEU (sacrebleu), on the 0-100 scale."""
import sacrebleu

from mmsft.metrics.bases import TextMetric, reference_streams


class Bleu(TextMetric):
    DESCRIPTION = (
        "sacrebleu.corpus_bleu over all samples (13a tokenisation by default). Each sample may have one "
        "reference string or a list of them; samples with fewer references are padded with None, "
        "which sacrebleu skips. Score is 0-100."
    )
    CITATION = "Post, 2018. A Call for Clarity in Reporting BLEU Scores."
    INPUTS = """    tokenize (str, optional): sacrebleu tokenizer, default "13a".
    lowercase (bool, optional): case-insensitive BLEU, default False.
Returns:
    bleu (float): 0-100.
"""

    def _compute(self, predictions, references, tokenize="13a", lowercase=False):
        result = sacrebleu.corpus_bleu(predictions, reference_streams(references),
                                       tokenize=tokenize, lowercase=lowercase)
        return {"bleu": float(result.score)}
