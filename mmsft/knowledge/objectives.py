"""What a knowledge adapter learns from a KB alone (K-Adapter's pre-training), one entry per objective:
each turns the KB's entries into (texts, targets) and says how the targets are scored.

* ``field``: one class per distinct value of ``fields[target]`` (ICD-10: description -> chapter;
  BANKING77 intents: name -> intent), cross-entropy.
* ``flags``: one output per boolean field in ``targets`` (Loughran-McDonald: word -> Negative,
  Positive, Uncertainty, Litigious, Constraining), binary cross-entropy.

What the adapter reads of an entry is chosen (``INPUTS``): its text, or its id when the text spells
the answer out (a Loughran-McDonald passage is "loss: negative"; the adapter must learn it from "loss").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UserError
from ..registry import Registry
from .kb import KnowledgeBase


@dataclass
class KBTask:
    texts: list[str]
    targets: torch.Tensor  # (n,) class ids for "ce", (n, outputs) 0/1 for "bce"
    outputs: int
    names: list[str]  # class or flag names
    loss: str  # "ce" | "bce"

    def describe(self, objective: str, targets: list[str]) -> str:
        what = f"{len(self.names)} classes" if self.loss == "ce" else f"{len(self.names)} flags"
        return (f"{objective} {', '.join(targets)}: predict {', '.join(self.names[:5])}{'...' if len(self.names) > 5 else ''} "
                f"({what}) from {len(self.texts):,} entries")


KB_OBJECTIVES: Registry = Registry("knowledge-adapter objective")
INPUTS: dict[str, Callable] = {"text": lambda e: e.text, "id": lambda e: e.id, "title": lambda e: e.title or e.text,
                               "passage": lambda e: e.passage}


def _missing(kb: KnowledgeBase, name: str, where: str):
    known = sorted({k for e in kb.entries[:1000] for k in e.fields})
    return UserError(f"no entry of KB '{kb.name}' has the field '{name}'", where=where, expected="one of: " + (", ".join(known) or "no fields"))


@KB_OBJECTIVES.register("field")
def field_objective(kb: KnowledgeBase, targets: list[str], where: str, read: Callable = INPUTS["text"]) -> KBTask:
    if len(targets) != 1:
        raise UserError("objective 'field' predicts one field", where=where, expected="targets: [FIELD]")
    name = targets[0]
    pairs = [(read(e), str(e.fields[name])) for e in kb.entries if name in e.fields]
    if not pairs:
        raise _missing(kb, name, where)
    classes = sorted({v for _, v in pairs})
    if len(classes) < 2:
        raise UserError(f"field '{name}' has one value in the whole KB: nothing to learn", where=where)
    index = {c: i for i, c in enumerate(classes)}
    return KBTask([t for t, _ in pairs], torch.tensor([index[v] for _, v in pairs]), len(classes), classes, "ce")


@KB_OBJECTIVES.register("flags")
def flags_objective(kb: KnowledgeBase, targets: list[str], where: str, read: Callable = INPUTS["text"]) -> KBTask:
    if not targets:
        raise UserError("objective 'flags' needs the boolean fields to predict", where=where, expected="targets: [FIELD, ...]")
    for name in targets:
        if not any(name in e.fields for e in kb.entries):
            raise _missing(kb, name, where)
    texts = [read(e) for e in kb.entries]
    flags = torch.tensor([[float(bool(e.fields.get(n, False))) for n in targets] for e in kb.entries])
    return KBTask(texts, flags, len(targets), list(targets), "bce")
