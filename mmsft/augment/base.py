"""The augmentation method interface, its registry, and applying an ``augment:`` block to train rows.

A method declares the task kinds it fits (``kinds``) and an option schema (``Options``, a dataclass
checked by ``mmsft.config.from_dict``).  ``prepare`` builds what the method needs from the train
rows once (vocabularies, same-label pools); ``transform`` makes one new row from one train row.
New kinds (generation, detection, dialogue) add methods by registering a class: nothing else changes.

Augmented rows are made from the training split only, after splitting, and any new row whose
normalised text occurs in validation or test is dropped, so augmentation can never leak.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..config import from_dict
from ..errors import UserError, suggest
from ..registry import Registry


@dataclass
class NoOptions:
    pass


class AugmentMethod:
    """One augmentation.  Subclasses set ``name``, ``kinds``, ``Options``, ``description``."""

    name = ""
    kinds: tuple[str, ...] = ()
    Options: type = NoOptions
    description = ""

    def prepare(self, rows: list[dict], options) -> Any:
        """Context built once from all train rows (pools, vocabularies)."""
        return None

    def transform(self, row: dict, ctx: Any, options, rng: random.Random) -> Optional[dict]:
        """A new row made from ``row`` (same label), or None when the method does not apply to it."""
        raise NotImplementedError

    def transform_many(self, rows: list[dict], ctx: Any, options, rng: random.Random) -> list[Optional[dict]]:
        """``transform`` over a chunk of rows; model-backed methods override it to batch their calls."""
        return [self.transform(row, ctx, options, rng) for row in rows]


METHODS: Registry[AugmentMethod] = Registry("augmentation method")


def register_method(cls: type) -> type:
    METHODS.add(cls.name, cls())
    return cls


@dataclass
class AugmentEntry:
    """One item of an ``augment:`` list: the method, how many new rows per train row, its options."""

    method: str
    factor: float = 1.0  # new rows per train row (0.5 = half as many as there are train rows)
    seed: int = 0  # added to the split seed: vary it to draw other augmentations
    options: Any = None


def methods_for(kind: str) -> list[str]:
    return [name for name, method in METHODS.items() if kind in method.kinds]


def parse_entry(raw: Any, kind: str, path: str) -> AugmentEntry:
    """Validate one ``augment`` item for a task ``kind``: method known and fitting, options known."""
    if isinstance(raw, AugmentEntry):
        return raw
    if isinstance(raw, str):
        raw = {"method": raw}
    if not isinstance(raw, dict) or "method" not in raw:
        raise UserError("each augment item needs a 'method'", where=path, expected="{method: NAME, factor: 1.0, ...options}")
    raw = dict(raw)
    name = raw.pop("method")
    if name not in METHODS:
        raise UserError(f"unknown augmentation method '{name}'.{suggest(name, METHODS.names())}", where=f"{path}.method",
                        expected="one of: " + ", ".join(methods_for(kind) or METHODS.names()))
    method = METHODS.get(name)
    if kind not in method.kinds:
        raise UserError(f"augmentation method '{name}' does not fit a {kind} task (it fits: {', '.join(method.kinds)})",
                        where=f"{path}.method", expected="one of: " + ", ".join(methods_for(kind) or ["(none registered)"]))
    factor, seed = raw.pop("factor", 1.0), raw.pop("seed", 0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
        raise UserError(f"factor must be a positive number, got {factor!r}", where=f"{path}.factor")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed must be an integer, got {seed!r}", where=f"{path}.seed")
    options = from_dict(method.Options, raw, path)
    return AugmentEntry(name, float(factor), seed, options)


def parse_entries(raw: Iterable, kind: str, path: str) -> list[AugmentEntry]:
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise UserError("augment must be a list of methods", where=path, expected="[{method: NAME, ...}, ...]")
    return [parse_entry(item, kind, f"{path}[{i}]") for i, item in enumerate(raw)]


def normalise(text: str) -> str:
    return " ".join(str(text).lower().split())


def _verdict(new: Optional[dict], key: str, seen: set, blocked: set) -> str:
    """"ok" (and its text is now seen), "unusable" (nothing, empty or a duplicate) or "leak" (a held-out text)."""
    if new is None:
        return "unusable"
    text = new.get(key)
    if not isinstance(text, str):  # non-text rows (images) are not compared
        return "ok"
    norm = normalise(text)
    if not norm or norm in seen:
        return "unusable"
    if norm in blocked:
        return "leak"
    seen.add(norm)
    return "ok"


def augment_rows(rows: list[dict], entries: list[AugmentEntry], *, seed: int, forbidden: Iterable[str] = (),
                 key: str = "text") -> tuple[list[dict], dict]:
    """New rows made from ``rows`` by each entry (originals are not included) and per-method counts.

    Rows whose normalised ``key`` field equals a forbidden text (validation/test) or an existing
    train text are dropped: an augmentation must neither leak nor merely duplicate."""
    blocked = {normalise(t) for t in forbidden}
    seen = {normalise(r[key]) for r in rows if isinstance(r.get(key), str)}
    out, stats = [], {}
    for index, entry in enumerate(entries):
        method = METHODS.get(entry.method)
        rng = random.Random(f"{seed}:{entry.seed}:{index}:{entry.method}")
        ctx = method.prepare(rows, entry.options)
        wanted = int(round(entry.factor * len(rows)))
        order = list(range(len(rows)))
        made = leaked = skipped = 0
        for attempt in range(int(math.ceil(entry.factor)) + 2):  # a few passes: some rows yield nothing
            rng.shuffle(order)
            start = 0
            while made < wanted and start < len(order):  # chunks of the rows still wanted (one model batch each)
                chunk = order[start : start + wanted - made]
                start += len(chunk)
                for i, new in zip(chunk, method.transform_many([rows[i] for i in chunk], ctx, entry.options, rng)):
                    verdict = _verdict(new, key, seen, blocked)
                    skipped += verdict == "unusable"
                    leaked += verdict == "leak"
                    if verdict == "ok":
                        new.setdefault("source", f"augment:{entry.method}:{rows[i].get('source', i)}")
                        out.append(new)
                        made += 1
            if made >= wanted:
                break
        stats[f"{index}:{entry.method}"] = {"added": made, "wanted": wanted, "dropped_as_leak": leaked, "unusable": skipped}
    return out, stats
