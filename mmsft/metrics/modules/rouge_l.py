"""ROUGE-L F-measure (rouge-score), averaged over samples, on the 0-100 scale like BLEU/chrF."""
from rouge_score import rouge_scorer

from mmsft.metrics.bases import TextMetric


class _Whitespace:
    def tokenize(self, text):
        return text.split()


class RougeL(TextMetric):
    DESCRIPTION = (
        "Sentence-level ROUGE-L (longest common subsequence) F-measure per sample, best over the "
        "sample's references, averaged and multiplied by 100 (same 0-100 scale as bleu/chrf). "
        "rouge-score's default tokenizer lowercases and keeps only [a-z0-9] tokens, so text in other "
        "scripts scores 0; pass tokenizer='whitespace' for such text. No stemming."
    )
    CITATION = "Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries."
    INPUTS = """    tokenizer (str, optional): "default" (rouge-score's) or "whitespace" (str.split, case kept).
Returns:
    rouge_l (float): 0-100.
"""

    def _compute(self, predictions, references, tokenizer="default"):
        if tokenizer not in ("default", "whitespace"):
            raise ValueError(f"rouge_l: tokenizer must be 'default' or 'whitespace', got {tokenizer!r}")
        custom = _Whitespace() if tokenizer == "whitespace" else None
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=custom)
        scores = []
        for pred, ref in zip(predictions, references):
            scores.append(scorer.score_multi(ref, pred)["rougeL"].fmeasure)
        return {"rouge_l": 100.0 * sum(scores) / len(scores) if scores else 0.0}
