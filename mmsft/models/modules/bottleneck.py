"""``bottleneck_adapter``: Houlsby-style bottleneck adapters fused residually after chosen blocks."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import UserError
from ...registry import MODULES
from .base import ModelModule, ModuleContext


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
