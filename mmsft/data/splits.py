"""Cleaning and splitting rows: deduplication policies and seeded stratified splits."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal


@dataclass
class SplitSpec:
    """Fractions used to split an unsplit file ('all'), or to carve validation out of train."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    seed: int = 42
    stratify: bool = True

    def validate(self, path: str) -> None:
        from ..errors import UserError

        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6 or min(self.train, self.validation, self.test) < 0:
            raise UserError(f"split fractions sum to {total:g}", where=path or "split", expected="non-negative fractions summing to 1")


DedupePolicy = Literal["none", "exact", "drop_conflicts"]


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def dedupe(rows: list[dict], policy: DedupePolicy) -> tuple[list[dict], dict]:
    """'exact' keeps the first of identical (text, label) rows; 'drop_conflicts' also drops every
    row whose text occurs with more than one label (the label is unknowable).  Returns counts."""
    stats = {"duplicates_removed": 0, "conflicting_texts": 0, "conflict_rows_removed": 0}
    if policy == "none":
        return rows, stats
    labels_by_text: dict[str, set] = defaultdict(set)
    for row in rows:
        labels_by_text[normalise(row["text"])].add(row["label"])
    conflicts = {t for t, labels in labels_by_text.items() if len(labels) > 1}
    stats["conflicting_texts"] = len(conflicts)
    seen, out = set(), []
    for row in rows:
        key = normalise(row["text"])
        if policy == "drop_conflicts" and key in conflicts:
            stats["conflict_rows_removed"] += 1
            continue
        if (key, row["label"]) in seen:
            stats["duplicates_removed"] += 1
            continue
        seen.add((key, row["label"]))
        out.append(row)
    return out, stats


def split_rows(rows: list[dict], fractions: dict[str, float], seed: int, stratify: bool) -> dict[str, list[dict]]:
    """Seeded split by fractions; stratified per label so small classes appear in every split."""
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["label"] if stratify else ""].append(row)
    names = [n for n, f in fractions.items() if f > 0]
    out: dict[str, list[dict]] = {n: [] for n in names}
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        start, cum = 0, 0.0
        for i, name in enumerate(names):
            cum += fractions[name]
            end = len(members) if i == len(names) - 1 else round(cum / sum(fractions[n] for n in names) * len(members))
            out[name].extend(members[start:end])
            start = end
    for name in names:
        rng.shuffle(out[name])
    return out


def check_split_names(splits, path: str, allowed=("train", "validation", "test"), required=("train", "test")) -> None:
    """A ``splits`` mapping names only known splits and at least the required ones."""
    from ..errors import UserError

    for key in splits:
        if key not in allowed:
            raise UserError(f"unknown split '{key}'", where=f"{path}.splits.{key}", expected=", ".join(allowed))
    if any(name not in splits for name in required):
        raise UserError("need " + " and ".join(f"splits.{n}" for n in required), where=f"{path}.splits")
