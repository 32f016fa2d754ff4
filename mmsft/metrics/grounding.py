"""What groundedness metrics count in a generated reply: content words, numbers and Bitext-style
``{{placeholders}}``, and what supports them (the retrieved passages and the input).

A real module (not part of a script) because two evaluate scripts share it: ``groundedness``
(supported shares, hallucinated placeholders) and ``knowledge_f1``.
"""
from __future__ import annotations

import re
import string
from collections import Counter

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between both but by "
    "can could did do does doing down during each few for from further had has have having he her here hers herself him "
    "himself his how i if in into is it its itself just let me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the their theirs them themselves then "
    "there these they this those through to too under until up very was we were what when where which while who whom why "
    "will with would you your yours yourself yourselves also may might must shall us".split())


def placeholders(text: str) -> list[str]:
    return [" ".join(p.lower().split()) for p in PLACEHOLDER.findall(text)]


def units(text: str) -> dict[str, list[str]]:
    """{"words": content words, "numbers": numbers, "placeholders": placeholder names} of ``text``."""
    plain = PLACEHOLDER.sub(" ", text)
    return {"words": [w for w in WORD.findall(plain.lower()) if w not in STOPWORDS and len(w) > 1],
            "numbers": NUMBER.findall(plain), "placeholders": placeholders(text)}


def evidence(passages: list[str], source: str) -> dict[str, set[str]]:
    """The unit sets a reply's units may be found in."""
    found = {"words": set(), "numbers": set(), "placeholders": set()}
    for text in [source, *passages]:
        for kind, values in units(text).items():
            found[kind].update(values)
    return found


def knowledge_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation (lower case, no punctuation or articles) for knowledge-F1."""
    text = "".join(" " if ch in string.punctuation else ch for ch in text.lower())
    return [t for t in text.split() if t not in ("a", "an", "the")]


def unigram_f1(prediction: str, reference: str) -> float:
    pred, ref = knowledge_tokens(prediction), knowledge_tokens(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
