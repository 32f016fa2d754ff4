"""``distill_projection``: learned maps from student block widths to the teacher's width.

Hidden-state KD compares student block j with teacher block m(j); when the widths differ (a smaller
zoo student) a linear map per matched block carries the student's states into the teacher's space
(FitNets' regressor, TinyBERT's W_h).  It is a model module so that it trains with the student,
is checkpointed and resumed like any module, and is saved with the run -- but it attaches to no
block (``points`` is empty), so it never changes what the student computes or predicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import UserError
from ..models.modules.base import ModelModule
from ..registry import MODULES


@dataclass
class ProjectionOptions:
    teacher_width: int = 0  # the teacher blocks' width
    layers: list[int] = field(default_factory=list)  # student blocks that are matched (one map each)

    def validate(self, path: str) -> None:
        if self.teacher_width < 1 or not self.layers:
            raise UserError("teacher_width >= 1 and a non-empty layers list are required", where=path)


@MODULES.register("distill_projection")
class DistillProjection(ModelModule):
    Options = ProjectionOptions

    def __init__(self, backbone, options: ProjectionOptions):
        super().__init__(backbone, options)
        self.layers = [backbone.block_index(i) for i in options.layers]
        self.maps = nn.ModuleDict({str(i): nn.Linear(backbone.block_width(i), options.teacher_width) for i in self.layers})

    def project(self, index: int, hidden):
        return self.maps[str(index)](hidden)
