"""Objectives: what the runner minimises for a batch (``objective: {name: ...}``; ``OBJECTIVES``).

The runner only calls ``loss(model, batch) -> (loss, logs)``; an objective may also reshape how
batches are drawn (``batch_sampler``) or hand the runner callbacks (a teacher kept in the loop,
a schedule of loss weights).  Multi-task sampling and distillation plug in here without touching
the runner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..config import from_dict
from ..registry import OBJECTIVES


class Objective:
    Options: type = object

    def __init__(self, options: Any = None):
        self.options = options

    @classmethod
    def parse_options(cls, raw: dict, path: str = "objective") -> Any:
        return from_dict(cls.Options, raw or {}, path)

    def bind(self, prepared) -> None:
        """Called with the run's prepared data before training (task ids, teacher inputs...)."""

    def batch_sampler(self, spec, lengths, num_replicas: int = 1, rank: int = 0):
        """A batch sampler of the objective's own, or None for the runner's length-grouped one."""
        return None

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def callbacks(self) -> list:
        return []


@dataclass
class SingleOptions:
    pass


@OBJECTIVES.register("single")
class Single(Objective):
    """One task: the weighted sum of its heads' losses (``model.heads.<name>.weight``)."""

    Options = SingleOptions

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        out = model(**batch)
        if "loss" not in out:
            raise ValueError("the batch carries no labels for any head: nothing to train")
        logs = {f"loss/{k}": float(v) for k, v in out.get("losses", {}).items()} if len(out.get("losses", {})) > 1 else {}
        return out["loss"], logs


def build_objective(spec: Optional[dict]):
    """``objective`` block (``{name: single, ...options}``) -> an ``Objective``."""
    spec = dict(spec or {"name": "single"})
    name = spec.pop("name", "single")
    cls = OBJECTIVES.get(name)
    return cls(cls.parse_options(spec, "objective"))
