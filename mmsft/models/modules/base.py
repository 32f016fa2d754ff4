"""The module interface: modules between backbone and heads (``model.modules``; ``MODULES`` registry).

A module attaches **after chosen blocks** of the backbone (``points``): the composed model hooks it
onto those blocks, so whatever runs the backbone -- training, evaluation, ``predict``, and an LM's own
``generate`` loop -- runs the module too.  A module may also read the outputs of other blocks
(``reads_layers``, captured for it) and extra batch keys (``batch_keys``: retrieved passages, an image
beside a text), which the composed model routes to modules instead of the backbone.  Knowledge
injectors and fusion modules plug in here (one file per module type in this package;
``bottleneck_adapter`` is the first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...registry import MODULES


@dataclass
class ModuleContext:
    """What a module sees besides its block's output during one forward or generate call."""

    batch: dict = field(default_factory=dict)  # the extra batch keys the modules declared
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # captured block outputs

    def expand(self, factor: int) -> "ModuleContext":
        """Each extra repeated ``factor`` times along the batch (beam search decodes B x beams rows)."""
        if factor == 1:
            return self
        return ModuleContext({k: v.repeat_interleave(factor, 0) if torch.is_tensor(v) else v for k, v in self.batch.items()}, {})


class ModelModule(nn.Module):
    """Subclasses set ``Options`` and implement ``points`` and ``transform`` (a module hooked onto
    blocks), or set ``fuses`` and implement ``fuse`` (a fusion module joining the backbone's features
    with a tower's after both ran; it is built with ``towers=`` when ``needs_towers``)."""

    Options: type = object
    batch_keys: tuple[str, ...] = ()
    needs_towers = False
    fuses: str | None = None  # the tower a fusion module joins the backbone's features with

    def __init__(self, backbone, options):
        super().__init__()
        self.options = options

    @property
    def trainable(self) -> bool:
        return getattr(self.options, "trainable", True)

    def points(self) -> list[int]:
        """Block indices (positions in ``backbone.blocks()``) whose output this module transforms."""
        return []

    def reads_layers(self) -> list[int]:
        """Block indices whose outputs the module reads from ``context.hidden``."""
        return []

    def transform(self, index: int, hidden: torch.Tensor, context: ModuleContext) -> torch.Tensor:
        """The new output of block ``index`` (``hidden``: (B, T, H) token states or (B, C, H, W) maps)."""
        return hidden

    def fuse(self, features) -> None:
        """Fusion modules: set ``features.joint`` from ``features`` and ``features.towers[self.fuses]``."""


def build_modules(specs: list[Any], backbone, towers: dict | None = None) -> dict[str, ModelModule]:
    """``model.modules`` entries -> {name: module}, options parsed by each module type's schema."""
    from ...config import from_dict

    out = {}
    for i, spec in enumerate(specs):
        cls = MODULES.get(spec.type)
        name = spec.name or spec.type
        if name in out:
            raise UserError(f"two modules are named '{name}'", where=f"model.modules[{i}].name", expected="distinct names")
        options = spec.options if isinstance(spec.options, cls.Options) else from_dict(cls.Options, spec.options or {}, f"model.modules[{i}].options")
        out[name] = cls(backbone, options, towers=towers or {}) if cls.needs_towers else cls(backbone, options)
    return out
