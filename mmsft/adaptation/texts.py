"""Unlabelled text files: the only form in which a domain's data reaches an adaptation method.

A file holds one JSON object per line with exactly one key, ``text``.  The benchmark writes it from a
task's *training* split with the labels dropped (``mmsft.crossdomain.plan.write_unlabelled``), so a
method given a path cannot read a label or a test text even by mistake; ``read_texts`` rejects a
line that carries anything else.  ``TextStream`` turns such a file into an endless, seeded,
resumable stream of tokenized batches (DANN draws one target batch per source batch).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from ..errors import UserError


def write_texts(path: Path, texts: list[str]) -> Path:
    """Atomically write ``texts`` (one ``{"text": ...}`` line each)."""
    from ..atomic import write_text

    return write_text(path, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))


def _text_of(line: str, where: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid JSON ({exc.msg})", where=where) from None
    if not isinstance(record, dict) or set(record) != {"text"} or not isinstance(record["text"], str):
        raise UserError("an unlabelled texts line holds exactly one key, 'text'", where=where,
                        expected='{"text": "..."} (labels never enter domain adaptation)')
    return record["text"]


def read_texts(path: str | Path, limit: Optional[int] = None) -> list[str]:
    """The texts of an unlabelled file (the first ``limit`` of them); a line with any other key is an error."""
    from ..data.readers import read_text

    path = Path(path)
    lines = [(n, line) for n, line in enumerate(read_text(path, "utf-8").splitlines(), 1) if line.strip()]
    return [_text_of(line, f"{path}:{n}") for n, line in lines[:limit]]


class TextStream:
    """Endless batches of tokenized texts: each pass is ``epoch_batches`` of its own seed (shuffled,
    length-grouped like the runner's source batches, so a target batch pads little), and the position
    (pass, batch) is kept for an exact resume."""

    def __init__(self, texts: list[str], tokenizer, max_length: int, batch_size: int, seed: int):
        self.ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        self.tokenizer, self.batch_size, self.seed = tokenizer, min(batch_size, len(self.ids)), seed
        self.epoch, self.position = 0, 0
        self._batches = self._epoch()

    def _epoch(self) -> list[list[int]]:
        from ..training.sampling import epoch_batches

        # seed + 1: not the runner's own (seed, epoch) draws for the source batches
        batches = epoch_batches([len(x) for x in self.ids], self.batch_size, self.seed + 1, self.epoch)
        return [b for b in batches if len(b) == self.batch_size] or batches  # no short remainder batch

    def next(self, device) -> dict:
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch()
        idx = self._batches[self.position]
        self.position += 1
        batch = self.tokenizer.pad({"input_ids": [self.ids[i] for i in idx]}, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}

    def state(self) -> dict[str, torch.Tensor]:
        return {"stream.epoch": torch.tensor(self.epoch), "stream.position": torch.tensor(self.position)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.epoch, self.position = int(state["stream.epoch"]), int(state["stream.position"])
        self._batches = self._epoch()
