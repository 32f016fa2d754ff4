"""Box-aware augmentation and the resize policy, built on ``torchvision.transforms.v2``.

Transforms take and return ``(image, target)`` with ``image`` a ``tv_tensors.Image`` (uint8 CHW) and
``target = {"boxes": tv_tensors.BoundingBoxes (XYXY), "labels": int64 tensor}``; v2 moves the boxes
with every geometric op and ``SanitizeBoundingBoxes`` drops boxes (and their labels) that a crop left
degenerate (< 1 px).

Train pipeline: colour jitter (uint8, boxes untouched) -> horizontal flip -> SSD-style
``RandomIoUCrop`` (a scale/crop that keeps at least one box with IoU >= a random threshold, with prob
``crop_p``; background images are never cropped) -> resize policy -> sanitize -> float [0, 1].
Eval pipeline: resize policy -> float.

Resize policy.  Default ``"letterbox"``: scale the long side to ``size`` keeping the aspect ratio and
pad to a ``size`` x ``size`` square with grey (114).  Chosen because detection boxes and objects keep
their true shape: a car looks the same whether the photo was 4:3, 16:9 or square, at train and at
inference time, so a model fine-tuned on one camera shape transfers to another; batches are still
fixed-size squares; and predictions map back exactly with ``boxes.unletterbox_boxes``.  The cost is
padded pixels on non-square images.  ``"resize"`` stretches to the square (no padding, distorts
aspect; fine when every image already has the same shape, e.g. Roboflow's 416x416 exports, where the
two policies coincide).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .boxes import letterbox_params

ResizePolicy = Literal["letterbox", "resize"]
PAD_FILL = 114


def _image_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for item in flat_inputs:
        if isinstance(item, (tv_tensors.Image, tv_tensors.BoundingBoxes)) or hasattr(item, "getbands"):
            h, w = F.get_size(item) if not isinstance(item, tv_tensors.BoundingBoxes) else item.canvas_size
            return int(h), int(w)
    raise TypeError("no image or boxes among the transform inputs")


class Letterbox(v2.Transform):
    """Resize keeping aspect ratio so the long side is ``size``, then pad (centred) to a square."""

    def __init__(self, size: int, fill: int = PAD_FILL):
        super().__init__()
        self.size, self.fill = int(size), fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _image_size(flat_inputs)
        _, new_w, new_h, left, top = letterbox_params(w, h, self.size)
        return dict(new_h=new_h, new_w=new_w, padding=[left, top, self.size - new_w - left, self.size - new_h - top])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = F.resize(inpt, [params["new_h"], params["new_w"]], antialias=True)
        return F.pad(out, params["padding"], fill=self.fill)


class IoUCropIfBoxes(v2.RandomIoUCrop):
    """``RandomIoUCrop`` with probability ``p``; images without boxes pass unchanged."""

    def __init__(self, p: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = [x for x in flat_inputs if isinstance(x, tv_tensors.BoundingBoxes)]
        if not boxes or boxes[0].shape[0] == 0 or torch.rand(1).item() >= self.p:
            return {}
        return super().make_params(flat_inputs)


def resize_transform(size: int, policy: ResizePolicy = "letterbox") -> v2.Transform:
    if policy == "letterbox":
        return Letterbox(size)
    if policy == "resize":
        return v2.Resize((size, size), antialias=True)
    raise ValueError(f"resize policy '{policy}' (expected 'letterbox' or 'resize')")


def detection_transforms(train: bool, size: int = 640, *, policy: ResizePolicy = "letterbox", hflip_p: float = 0.5,
                         crop_p: float = 0.5, color_jitter: bool = True) -> v2.Compose:
    """The train (augmenting) or eval pipeline described in the module docstring."""
    steps: list[v2.Transform] = []
    if train:
        if color_jitter:
            steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02))
        if hflip_p > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip_p))
        if crop_p > 0:
            steps.append(IoUCropIfBoxes(p=crop_p))
    steps.append(resize_transform(size, policy))
    if train:
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def to_tv(image: torch.Tensor, boxes: torch.Tensor, labels) -> tuple[tv_tensors.Image, dict]:
    """Wrap a uint8 CHW image and xyxy pixel boxes as v2 inputs."""
    h, w = image.shape[-2:]
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return tv_tensors.Image(image), {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
    }
