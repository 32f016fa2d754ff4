"""Modules between backbone and heads (``model.modules``; ``MODULES`` registry).

A module attaches **after chosen blocks** of the backbone (``points``): the composed model hooks it
onto those blocks, so whatever runs the backbone -- training, evaluation, ``predict``, and an LM's own
``generate`` loop -- runs the module too.  A module may also read the outputs of other blocks
(``reads_layers``, captured for it) and extra batch keys (``batch_keys``: retrieved passages, an image
beside a text), which the composed model routes to modules instead of the backbone.  Knowledge
injectors and fusion modules plug in here; ``bottleneck_adapter`` is the first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..registry import MODULES


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
    """Subclasses set ``Options`` and implement ``points`` and ``transform``."""

    Options: type = object
    batch_keys: tuple[str, ...] = ()

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


def _channels_last(hidden: torch.Tensor) -> bool:
    return hidden.ndim == 4  # image maps (B, C, H, W): apply per position over channels


@dataclass
class BottleneckOptions:
    layers: list[int] = field(default_factory=lambda: [-1])  # blocks after which an adapter is fused (negative: from the top)
    size: int = 64  # bottleneck width
    dropout: float = 0.0
    scale: float = 1.0  # residual scale of the adapter's output
    trainable: bool = True

    def validate(self, path: str) -> None:
        if self.size < 1:
            raise UserError(f"size must be >= 1, got {self.size}", where=f"{path}.size")
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise UserError("layers must be a non-empty list of distinct block indices", where=f"{path}.layers")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}", where=f"{path}.dropout")


class Bottleneck(nn.Module):
    """LayerNorm -> down-projection -> GELU -> up-projection (zero-initialised: starts as identity)."""

    def __init__(self, width: int, size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, size)
        self.up = nn.Linear(size, width)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(nn.functional.gelu(self.down(self.norm(hidden)))))


@MODULES.register("bottleneck_adapter")
class BottleneckAdapter(ModelModule):
    """Houlsby-style bottleneck adapters fused residually after chosen blocks: ``h + scale * f(h)``.

    Works on any backbone family: token states (text encoders, LMs: the adapter also runs inside
    ``generate``) and image feature maps (applied per position over channels)."""

    Options = BottleneckOptions

    def __init__(self, backbone, options: BottleneckOptions):
        super().__init__(backbone, options)
        self._points = [backbone.block_index(i) for i in options.layers]
        self.adapters = nn.ModuleDict({str(i): Bottleneck(backbone.block_width(i), options.size, options.dropout) for i in self._points})

    def points(self) -> list[int]:
        return list(self._points)

    def transform(self, index: int, hidden: torch.Tensor, context: ModuleContext) -> torch.Tensor:
        adapter = self.adapters[str(index)]
        if _channels_last(hidden):
            delta = adapter(hidden.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            delta = adapter(hidden)
        return hidden + self.options.scale * delta.to(hidden.dtype)


def build_modules(specs: list[Any], backbone) -> dict[str, ModelModule]:
    """``model.modules`` entries -> {name: module}, options parsed by each module type's schema."""
    from ..config import from_dict

    out = {}
    for i, spec in enumerate(specs):
        cls = MODULES.get(spec.type)
        name = spec.name or spec.type
        if name in out:
            raise UserError(f"two modules are named '{name}'", where=f"model.modules[{i}].name", expected="distinct names")
        options = spec.options if isinstance(spec.options, cls.Options) else from_dict(cls.Options, spec.options or {}, f"model.modules[{i}].options")
        out[name] = cls(backbone, options)
    return out
