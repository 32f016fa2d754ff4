"""What a task kind hands the runner: model-ready splits, a collate function and per-sample lengths."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Prepared:
    """Model-ready splits: datasets of tensors-to-be, a collate function, lengths for batching."""

    splits: dict[str, Any]
    collate: Callable
    lengths: dict[str, list[int]]
    groups: dict[str, list[int]] = field(default_factory=dict)  # train-sample group ids for balanced samplers ("class", "cluster")
    deterministic_train: bool = True  # False when train samples are randomly transformed (image augmentation): no feature cache
    extra: dict = field(default_factory=dict)  # the kind's own per-split data (kept when features are cached)
