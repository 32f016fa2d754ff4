"""The raw view of a task's data that every check works on: one ``Item`` per row / image as the task
reads it, BEFORE the task's own cleaning, tagged with the file it came from and the split the
task's configured cleaning and splitting puts it in ("dropped" when the task's dedupe removes it).

Each task kind builds its own view (``TaskKind.qc_view`` in ``mmsft/kinds/<kind>/qc.py``); the checks
here only see ``QCData``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class Item:
    id: int
    label: Any  # class name (text) or list of class names (detection: one per box)
    file_key: str  # the task's files key: all | train | validation | test (detection: the split)
    source: str  # file:line, or the image path
    split: str  # effective split after the task's cleaning and splitting, or "dropped"
    text: Optional[str] = None
    image: Optional[Path] = None
    extra: dict = field(default_factory=dict)  # detection: boxes (xyxy), width, height


@dataclass
class QCData:
    task: str
    kind: str
    modality: str  # "text" | "image"
    items: list[Item]
    labels: list[str]
    files: dict[str, list[str]]  # files key -> paths read
    cleaning: dict = field(default_factory=dict)  # the task's own cleaning counts (dedupe)
    backbone: Optional[str] = None
    max_length: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    def by_split(self, split: str) -> list[Item]:
        return [it for it in self.items if it.split == split]

    def splits(self) -> list[str]:
        present = {it.split for it in self.items}
        return [s for s in (*SPLIT_ORDER, "dropped") if s in present]

    def file_keys(self) -> list[str]:
        return list(dict.fromkeys(it.file_key for it in self.items))


def build_view(cfg) -> QCData:
    """The raw view of ``cfg``'s data, as its task kind reads it (``TaskKind.qc_view``)."""
    from ..registry import KINDS

    return KINDS.get(cfg.kind).qc_view(cfg)
