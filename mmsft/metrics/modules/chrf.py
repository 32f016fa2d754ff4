"""Corpus chrF (sacrebleu), on the 0-100 scale."""
import datasets
import evaluate
import sacrebleu

_DESCRIPTION = (
    "sacrebleu.corpus_chrf over all samples: character n-gram F-score (char_order=6, beta=2; "
    "word_order=0 is chrF, 2 is chrF++). Each sample may have one reference string or a list of "
    "them; missing ones are padded with None, which sacrebleu skips. Score is 0-100."
)
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): one or more references per sample.
    word_order (int, optional): 0 (chrF, default) or 2 (chrF++).
Returns:
    chrf (float): 0-100.
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


def _ref_streams(references):
    n = max((len(r) for r in references), default=1)
    return [[r[i] if i < len(r) else None for r in references] for i in range(n)]


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Popovic, 2015. chrF: character n-gram F-score for automatic MT evaluation.",
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

    def _compute(self, predictions, references, word_order=0):
        result = sacrebleu.corpus_chrf(predictions, _ref_streams(references), word_order=word_order)
        return {"chrf": float(result.score)}
