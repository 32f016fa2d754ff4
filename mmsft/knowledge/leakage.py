"""Leakage exclusion between a KB and a task's rows (the KB side of ``mmsft data check``'s leakage).

* An entry that equals, contains or was made from a validation / test row (its text, or its reply
  for a conversation) is **blocked** for the whole run: no sample ever retrieves it, so held-out text
  cannot reach the model through the KB.
* A training row never retrieves **itself**: the entries it equals, that contain it, or that were
  made from it (``Entry.sources``) are excluded from its own results.

Containment is found in one pass per side with an Aho-Corasick automaton over the normalised row
texts (case and whitespace folded, as the dedupe of ``mmsft.data.splits``); rows shorter than
``MIN_CONTAINED_CHARS`` only count when equal, so a short phrase does not block every entry using it.
"""
from __future__ import annotations

from collections import defaultdict

from ..data.splits import normalise
from .kb import KnowledgeBase

MIN_CONTAINED_CHARS = 24
HELD_OUT = ("validation", "test")


def contained(kb: KnowledgeBase, texts: list[str]) -> dict[int, set[int]]:
    """Row position -> the entries whose text or passage equals or contains that row's text."""
    import ahocorasick

    keys = [normalise(t) for t in texts]
    out: dict[int, set[int]] = defaultdict(set)
    exact: dict[str, list[int]] = defaultdict(list)
    automaton = ahocorasick.Automaton()
    for pos, key in enumerate(keys):
        exact[key].append(pos)
        if len(key) >= MIN_CONTAINED_CHARS:
            if key in automaton:
                automaton.get(key).append(pos)
            else:
                automaton.add_word(key, [pos])
    searchable = len(automaton) > 0
    if searchable:
        automaton.make_automaton()
    for i, entry in enumerate(kb.entries):
        for text in {normalise(entry.text), normalise(entry.passage)}:
            for pos in exact.get(text, ()):
                out[pos].add(i)
            if searchable:
                for _, positions in automaton.iter(text):
                    for pos in positions:
                        out[pos].add(i)
    return out


def by_source(kb: KnowledgeBase) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for i, entry in enumerate(kb.entries):
        for source in entry.sources:
            out[source].add(i)
    return out


def row_texts(row: dict) -> list[str]:
    """What of a row must not be reachable: its text and, for a conversation, its reply."""
    return [t for t in (row.get("text"), row.get("reply")) if t]


def row_exclusions(kb: KnowledgeBase, rows: list[dict]) -> list[set[int]]:
    """Per row, the entries it must not retrieve: those equal to / containing its text or reply, or made from it."""
    owner = [pos for pos, row in enumerate(rows) for _ in row_texts(row)]
    hits = contained(kb, [t for row in rows for t in row_texts(row)])
    made = by_source(kb)
    out = [made.get(row.get("source", ""), set()).copy() for row in rows]
    for flat, entries in hits.items():
        out[owner[flat]] |= entries
    return out


def held_out_entries(kb: KnowledgeBase, rows: dict[str, list[dict]] | None) -> set[int]:
    """Entries equal to, containing or made from any validation / test row."""
    held = [row for split in HELD_OUT for row in (rows or {}).get(split, [])]
    return set().union(*row_exclusions(kb, held)) if held else set()
