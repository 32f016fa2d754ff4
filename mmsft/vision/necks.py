"""Necks: backbone feature maps (strides 8/16/32) -> equal-width maps the detection head shares.

* ``fpn``: torchvision's ``FeaturePyramidNetwork`` (1x1 laterals, top-down sum, 3x3 smoothing).
* ``project``: a 1x1 projection per map, no top-down path (cheapest; the thin baseline).

Both add ``extra_levels`` coarser maps by stride-2 3x3 convs (FCOS/RetinaNet's P6, P7), which is
where the large objects of a 416 px photo land.  A thin width (``channels`` 64-128) is what keeps the
head affordable on a CPU: the head convs at stride 8 dominate the cost, not the backbone.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from ..registry import Registry

NECKS: Registry = Registry("neck")


class StridedLevels(ExtraFPNBlock):
    """``count`` extra maps, each a stride-2 3x3 conv of the previous (ReLU in between)."""

    def __init__(self, channels: int, count: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(count))
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, results: list[torch.Tensor], x: list[torch.Tensor], names: list[str]):
        p = results[-1]
        for i, conv in enumerate(self.convs):
            p = conv(F.relu(p) if i else p)
            results.append(p)
            names.append(f"extra{i}")
        return results, names


@NECKS.register("fpn")
class FPN(nn.Module):
    def __init__(self, in_channels: list[int], channels: int, extra_levels: int):
        super().__init__()
        self.out_channels = channels
        self.fpn = FeaturePyramidNetwork(in_channels, channels, StridedLevels(channels, extra_levels) if extra_levels else None)

    def forward(self, features: list[torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


@NECKS.register("project")
class Projection(nn.Module):
    def __init__(self, in_channels: list[int], channels: int, extra_levels: int):
        super().__init__()
        self.out_channels = channels
        self.proj = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.extra = StridedLevels(channels, extra_levels) if extra_levels else None

    def forward(self, features: list[torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        results = [proj(f) for proj, f in zip(self.proj, features)]
        names = [str(i) for i in range(len(results))]
        if self.extra is not None:
            results, names = self.extra(results, features, names)
        return OrderedDict(zip(names, results))
