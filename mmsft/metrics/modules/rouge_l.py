"""ROUGE-L F-measure (rouge-score), averaged over samples, on the 0-100 scale like BLEU/chrF."""
import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = (
    "Sentence-level ROUGE-L (longest common subsequence) F-measure per sample, best over the "
    "sample's references, averaged and multiplied by 100 (same 0-100 scale as bleu/chrf). "
    "rouge-score's default tokenizer lowercases and keeps only [a-z0-9] tokens, so text in other "
    "scripts scores 0; pass tokenizer='whitespace' for such text. No stemming."
)
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): one or more references per sample.
    tokenizer (str, optional): "default" (rouge-score's) or "whitespace" (str.split, case kept).
Returns:
    rouge_l (float): 0-100.
"""

_STRING = datasets.Value("string", id="sequence")
_FEATURES = datasets.Features({"predictions": _STRING,
                               "references": datasets.Sequence(_STRING, id="references")})


def _as_lists(references):
    # A bare string reference becomes [string]. Done before evaluate encodes the batch: evaluate
    # only type-checks a column's first item, so a str after a list would be split into chars.
    if references is None:
        return None
    return [[r] if isinstance(r, str) else list(r) for r in references]


class _Whitespace:
    def tokenize(self, text):
        return text.split()


class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS,
            features=_FEATURES,
        )

    # evaluate appends inputs_description to these docstrings, so they must exist.
    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch; a bare string reference is taken as a one-reference list."""
        super().add_batch(predictions=predictions, references=_as_lists(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one sample; a bare string reference is taken as a one-reference list."""
        reference = [reference] if isinstance(reference, str) else reference
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, tokenizer="default"):
        if tokenizer not in ("default", "whitespace"):
            raise ValueError(f"rouge_l: tokenizer must be 'default' or 'whitespace', got {tokenizer!r}")
        custom = _Whitespace() if tokenizer == "whitespace" else None
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=custom)
        scores = []
        for pred, ref in zip(predictions, references):
            scores.append(scorer.score_multi(ref, pred)["rougeL"].fmeasure)
        return {"rouge_l": 100.0 * sum(scores) / len(scores) if scores else 0.0}
