"""Entity linking by alias matching: an Aho-Corasick automaton (pyahocorasick) over every entry's
aliases finds them in a text in one pass; matches must sit on word boundaries, and overlapping ones
resolve to the longest (leftmost first).  An alias shared by several entries links the first."""
from __future__ import annotations

from .kb import KnowledgeBase


def _boundary(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not before.isalnum() and not after.isalnum()


class AliasLinker:
    def __init__(self, kb: KnowledgeBase, min_chars: int = 4):
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        self.aliases = 0
        for i, entry in enumerate(kb.entries):
            for alias in entry.aliases:
                key = " ".join(alias.lower().split())
                if len(key) >= min_chars and key not in self.automaton:
                    self.automaton.add_word(key, (len(key), i))
                    self.aliases += 1
        if self.aliases:
            self.automaton.make_automaton()

    def matches(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, entry index) of the non-overlapping alias matches in ``text``."""
        if not self.aliases:
            return []
        lowered = " ".join(text.lower().split())
        found = [(end + 1 - n, end + 1, i) for end, (n, i) in self.automaton.iter(lowered) if _boundary(lowered, end + 1 - n, end + 1)]
        found.sort(key=lambda m: (m[0], -(m[1] - m[0])))
        out, reach = [], 0
        for start, end, i in found:
            if start >= reach:
                out.append((start, end, i))
                reach = end
        return out

    def link(self, text: str, limit: int) -> list[int]:
        """Distinct linked entry indices in order of first mention, at most ``limit``."""
        return list(dict.fromkeys(i for _, _, i in self.matches(text)))[:limit]
