"""The ``image`` backbone family: any zoo / timm / torchvision classifier cut into stages of feature maps.

Why a wrapper: detectors need the feature map at several strides (8, 16, 32), adapters need a
uniform shape to act on, and saving needs ``save_pretrained`` / ``from_pretrained``.

* ``ImageTrunk.stages`` is an ``nn.ModuleList`` (the trunk is ``ImageBackbone.model``, what adapters
  act on); stage *i* ends where the stride changes (MobileNetV2 and EfficientNet-Lite0 both give strides 2, 4, 8, 16, 32; the last stage keeps the classifier's 1x1
  ``conv_head`` / ``features.18`` so its 1280-d output is the pretrained feature).  The frozen
  adapter's ``train_top_layers: k`` therefore trains the last k stages, i.e. "freeze the first
  5 - k stages" (torchvision's ``trainable_backbone_layers``).
* Input: float images in [0, 1]; the model's own mean/std normalisation is applied inside.
* ``forward({"pixel_values": x})`` returns ``Features(maps=...)`` for ``out_indices`` (stages after the
  last one are not run); ``freeze_batch_norm`` keeps every BatchNorm in eval mode while training.
* ``lora_targets_auto()`` names every pointwise (1x1, ungrouped) conv: LoRA on them is cheap and
  leaves the depthwise convs (few weights, spatial filters) as pretrained.
* ``save_pretrained(folder)`` writes the trunk's ``model.safetensors`` + ``config.json`` (the model
  name); ``load_pretrained(folder)`` loads them back into a freshly built backbone.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..models.backbone import Backbone
from ..models.features import FeatureRequest, Features
from ..registry import BACKBONE_FAMILIES

# top-level children after the spatial trunk (pooling / classifier): the cut stops there
_HEAD_NAMES = {"global_pool", "avgpool", "classifier", "fc", "head", "head_drop", "flatten", "pre_logits", "fc_norm"}


def _pieces(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level children in definition order, first-level ``nn.Sequential`` containers flattened."""
    out = []
    for name, child in model.named_children():
        if name in _HEAD_NAMES:
            break
        if isinstance(child, nn.Sequential):
            out += [(f"{name}_{sub}", m) for sub, m in child.named_children()]
        else:
            out.append((name, child))
    return out


def _group_by_stride(pieces, probe: torch.Tensor) -> tuple[list[nn.Sequential], list[int], list[int]]:
    """Consecutive pieces with the same output stride form one stage: (stages, strides, channels)."""
    groups: list[list] = []  # [stride, channels, [(name, module), ...]]
    x = probe
    for name, module in pieces:
        x = module(x)
        if x.ndim != 4:
            raise UserError(f"cannot cut the model into stages: '{name}' does not return a feature map")
        stride = probe.shape[-1] // x.shape[-1]
        if groups and groups[-1][0] == stride:
            groups[-1][1] = x.shape[1]
            groups[-1][2].append((name, module))
        else:
            groups.append([stride, x.shape[1], [(name, module)]])
    return [nn.Sequential(OrderedDict(g[2])) for g in groups], [g[0] for g in groups], [g[1] for g in groups]


class ImageTrunk(nn.Module):
    """A classifier's spatial trunk as ``stages`` (checked against the classifier's own features)."""

    def __init__(self, name: str, model: nn.Module, probe_size: int = 128):
        super().__init__()
        was_training = model.training
        model.eval()
        probe = torch.rand(1, 3, probe_size, probe_size)
        with torch.no_grad():
            stages, self.strides, self.channels = _group_by_stride(_pieces(model), probe)
            self.stages = nn.ModuleList(stages)
            self._check_against(name, model, probe)
        self.train(was_training)

    def _check_against(self, name: str, model: nn.Module, probe: torch.Tensor) -> None:
        from .backbones import image_features

        x = probe
        for stage in self.stages:
            x = stage(x)
        reference = image_features(model, probe)
        if reference.shape != x.shape or not torch.allclose(reference, x, atol=1e-4):
            raise UserError(f"cannot cut '{name}' into stages (its children do not run in order)",
                            expected="a timm model or a torchvision model with .features")

    def forward(self, x: torch.Tensor, out_indices: Sequence[int]) -> list[torch.Tensor]:
        outs, last = [], max(out_indices)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in out_indices:
                outs.append(x)
            if i == last:
                break
        return outs


@BACKBONE_FAMILIES.register("image")
class ImageBackbone(Backbone):
    """Normalises [0, 1] images with the model's own mean/std and returns the maps of ``out_indices``."""

    family = "image"
    input_keys = ("pixel_values",)

    def __init__(self, name: str, model: nn.Module, probe_size: int = 128):
        cfg = getattr(model, "pretrained_cfg", None) or {}
        super().__init__(ImageTrunk(name, model, probe_size), name)
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.out_indices: list[int] = list(range(len(self.model.stages)))
        self.freeze_batch_norm = False  # detection keeps ImageNet BN statistics (small batches)

    @classmethod
    def load(cls, name: str):
        from ..zoo import ZOO

        backbone = load_image_backbone(name)
        backbone.entry = ZOO.get(name) if name in ZOO else None
        return backbone, None

    @property
    def strides(self) -> list[int]:
        return self.model.strides

    @property
    def channels(self) -> list[int]:
        return self.model.channels

    @property
    def width(self) -> int:
        return self.channels[self.out_indices[-1]]

    def block_width(self, index: int) -> int:
        return self.channels[self.block_index(index)]

    def blocks(self) -> nn.ModuleList:
        return self.model.stages

    def select(self, strides: Sequence[int]) -> list[int]:
        """Stage indices giving the feature maps at ``strides`` (the last stage of each stride)."""
        indices = []
        for s in strides:
            if s not in self.strides:
                raise UserError(f"the backbone has no stride-{s} feature map", where="model.heads.*.options.strides",
                                expected="a subset of " + str(self.strides))
            indices.append(len(self.strides) - 1 - self.strides[::-1].index(s))
        return indices

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_batch_norm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, inputs: dict, request: FeatureRequest = FeatureRequest()) -> Features:
        x = (inputs["pixel_values"] - self.mean) / self.std
        return Features(maps=self.model(x, self.out_indices), strides=[self.strides[i] for i in self.out_indices])

    def lora_targets_auto(self) -> list[str]:
        return [n for n, m in self.model.named_modules()
                if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]

    # -- saving: safetensors + config.json, like a Hugging Face folder ------------------------------
    def save_pretrained(self, folder, **_) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"mmsft_image_backbone": self.name, "strides": self.strides, "out_indices": self.out_indices}))

    def load_pretrained(self, folder) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")), strict=True)


def load_image_backbone(name: str, pretrained: bool = True) -> ImageBackbone:
    """Zoo entry / ``timm:`` / ``torchvision:`` / bare name -> ``ImageBackbone``."""
    from .backbones import timm_or_torchvision

    return ImageBackbone(name, timm_or_torchvision(name, pretrained=pretrained))
