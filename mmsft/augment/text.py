"""Text augmentations for text classification: token edits from in-domain vocabulary, entity and
number substitution, clause templates filled from same-label rows, same-label concatenation.

Tokens are whitespace-separated (the shared corpora are pre-tokenised: "sales rose 5.2 %").  Every
vocabulary, entity and number pool comes from the task's own training rows, so the new text stays
in-domain; labels are kept (each edit is small or joins same-label material).
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal, Optional

from ..errors import UserError
from .base import AugmentMethod, register_method

TEXT_KINDS = ("text_classification",)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
CLAUSE_BREAKS = {",", ";", ":", "while", "whereas", "but"}


def _check_p(p: float, path: str = "p") -> None:
    if not 0 < p <= 1:
        raise UserError(f"{path} must be in (0, 1], got {p}", where=path)


def by_label(rows: list[dict]) -> dict:
    groups = defaultdict(list)
    for row in rows:
        groups[row["label"]].append(row)
    return groups


def common_tokens(rows: list[dict], share: float = 0.1) -> set[str]:
    """The corpus's own stop words, whatever the language or domain: tokens in >= 10% of the rows (and >= 2)."""
    counts = Counter(tok for row in rows for tok in {t.lower() for t in row["text"].split()})
    return {tok for tok, n in counts.items() if n >= max(2.0, share * len(rows))}


@dataclass
class SwapOptions:
    p: float = 0.1  # share of positions swapped (at least one swap)

    def validate(self, path: str) -> None:
        _check_p(self.p, f"{path}.p" if path else "p")


@register_method
class TokenSwap(AugmentMethod):
    name, kinds, Options = "token_swap", TEXT_KINDS, SwapOptions
    description = "swap random token pairs (word order noise)"

    def transform(self, row, ctx, options, rng):
        tokens = row["text"].split()
        if len(tokens) < 2:
            return None
        for _ in range(max(1, round(options.p * len(tokens)))):
            i, j = rng.sample(range(len(tokens)), 2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        return {"text": " ".join(tokens), "label": row["label"]}


@dataclass
class DeleteOptions:
    p: float = 0.1  # probability of deleting each token (at least one deleted, at least two kept)

    def validate(self, path: str) -> None:
        _check_p(self.p, f"{path}.p" if path else "p")


@register_method
class TokenDelete(AugmentMethod):
    name, kinds, Options = "token_delete", TEXT_KINDS, DeleteOptions
    description = "delete random tokens"

    def transform(self, row, ctx, options, rng):
        tokens = row["text"].split()
        if len(tokens) < 3:
            return None
        keep = [t for t in tokens if rng.random() >= options.p]
        if len(keep) == len(tokens):
            keep.pop(rng.randrange(len(keep)))
        if len(keep) < 2:
            return None
        return {"text": " ".join(keep), "label": row["label"]}


@dataclass
class InsertOptions:
    p: float = 0.1  # inserted tokens per token (at least one)
    vocabulary: Literal["label", "all"] = "label"  # draw from rows of the same label, or from all rows

    def validate(self, path: str) -> None:
        _check_p(self.p, f"{path}.p" if path else "p")


@register_method
class TokenInsert(AugmentMethod):
    name, kinds, Options = "token_insert", TEXT_KINDS, InsertOptions
    description = "insert in-domain content words (from same-label rows) at random positions"

    def prepare(self, rows, options):
        stop = common_tokens(rows)
        words = defaultdict(list)
        for row in rows:
            for tok in row["text"].split():
                if tok.isalpha() and len(tok) > 2 and tok.lower() not in stop:
                    words[row["label"] if options.vocabulary == "label" else None].append(tok)
        return words

    def transform(self, row, words, options, rng):
        pool = words.get(row["label"] if options.vocabulary == "label" else None)
        tokens = row["text"].split()
        if not pool or not tokens:
            return None
        for _ in range(max(1, round(options.p * len(tokens)))):
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(pool))
        return {"text": " ".join(tokens), "label": row["label"]}


def number_shape(text: str) -> str:
    return re.sub(r"\d", "9", text)


def entity_shape(token: str, lower_share: dict[str, float]) -> Optional[str]:
    """'Cap' or 'UPPER' for a token the corpus almost never writes in lower case (a name), else None."""
    if not token[:1].isupper() or not token.replace("-", "").replace("'", "").isalpha() or len(token) < 2:
        return None
    if lower_share.get(token.lower(), 0.0) > 0.1:
        return None
    return "UPPER" if token.isupper() else "Cap"


@dataclass
class EntityOptions:
    p: float = 0.7  # probability of substituting each number / name found
    numbers: bool = True
    entities: bool = True

    def validate(self, path: str) -> None:
        _check_p(self.p, f"{path}.p" if path else "p")
        if not (self.numbers or self.entities):
            raise UserError("nothing to substitute", where=path or "options", expected="numbers and/or entities true")


@register_method
class EntitySwap(AugmentMethod):
    name, kinds, Options = "entity_swap", TEXT_KINDS, EntityOptions
    description = "substitute numbers (same digit shape) and names (tokens the data never lower-cases) with others from the data"

    def prepare(self, rows, options):
        tokens = [tok for row in rows for tok in row["text"].split()]
        seen, lower = Counter(t.lower() for t in tokens), Counter(t.lower() for t in tokens if t.islower())
        lower_share = {t: lower[t] / n for t, n in seen.items()}
        numbers, entities = defaultdict(list), defaultdict(list)
        for tok in tokens:
            for match in NUMBER.findall(tok):
                numbers[number_shape(match)].append(match)
            shape = entity_shape(tok, lower_share)
            if shape:
                entities[shape].append(tok)
        return {"numbers": numbers, "entities": entities, "lower_share": lower_share}

    def transform(self, row, ctx, options, rng):
        changed, out = False, []
        for tok in row["text"].split():
            new = tok
            if options.numbers and NUMBER.search(tok):
                def swap(match):
                    pool = ctx["numbers"].get(number_shape(match.group()))
                    return rng.choice(pool) if pool and rng.random() < options.p else match.group()
                new = NUMBER.sub(swap, tok)
            elif options.entities:
                shape = entity_shape(tok, ctx["lower_share"])
                if shape and ctx["entities"].get(shape) and rng.random() < options.p:
                    new = rng.choice(ctx["entities"][shape])
            changed |= new != tok
            out.append(new)
        return {"text": " ".join(out), "label": row["label"]} if changed else None


def clauses(text: str) -> list[list[str]]:
    """Split at clause breaks (, ; : while whereas but), each break kept at the start of its clause."""
    parts: list[list[str]] = [[]]
    for tok in text.split():
        if tok.lower() in CLAUSE_BREAKS and parts[-1]:
            parts.append([])
        parts[-1].append(tok)
    return [p for p in parts if p]


@dataclass
class TemplateOptions:
    min_clauses: int = 2  # rows with fewer clauses are not used as templates


@register_method
class Template(AugmentMethod):
    name, kinds, Options = "template", TEXT_KINDS, TemplateOptions
    description = "synthesis: a row's clause skeleton with one clause filled from another same-label row"

    def prepare(self, rows, options):
        fillers = defaultdict(list)
        for row in rows:
            parts = clauses(row["text"])
            if len(parts) >= options.min_clauses:
                fillers[row["label"]].extend(parts[1:])  # later clauses start with their break token
        return fillers

    def transform(self, row, fillers, options, rng):
        parts = clauses(row["text"])
        pool = fillers.get(row["label"])
        if len(parts) < options.min_clauses or not pool:
            return None
        slot = rng.randrange(1, len(parts))
        parts[slot] = rng.choice(pool)
        return {"text": " ".join(tok for part in parts for tok in part), "label": row["label"]}


@dataclass
class ConcatOptions:
    n: int = 2  # rows joined into one
    separator: str = " "

    def validate(self, path: str) -> None:
        if self.n < 2:
            raise UserError(f"n must be at least 2, got {self.n}", where=f"{path}.n" if path else "n")


@register_method
class Concat(AugmentMethod):
    name, kinds, Options = "concat", TEXT_KINDS, ConcatOptions
    description = "join the row with other rows of the same label"

    def prepare(self, rows, options):
        return by_label(rows)

    def transform(self, row, groups, options, rng):
        pool = groups.get(row["label"], [])
        if len(pool) < 2:
            return None
        others = [rng.choice(pool)["text"] for _ in range(options.n - 1)]
        return {"text": options.separator.join([row["text"], *others]), "label": row["label"]}
