"""Running a trained detector on image files: resize policy in, boxes back in original pixels."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .boxes import unletterbox_boxes
from .dataset import read_rgb
from .transforms import detection_transforms, to_tv


def restore_boxes(boxes: torch.Tensor, width: int, height: int, size: int, policy: str) -> torch.Tensor:
    """Boxes predicted on the ``size`` square -> pixels of the ``width`` x ``height`` original."""
    if policy == "letterbox":
        return unletterbox_boxes(boxes, width, height, size)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).clone()
    boxes[:, 0::2] = (boxes[:, 0::2] * width / size).clamp(0, width)
    boxes[:, 1::2] = (boxes[:, 1::2] * height / size).clamp(0, height)
    return boxes


def plain(detection: dict, width: int, height: int, size: int, policy: str) -> dict:
    """A model detection (tensors on any device) as CPU tensors in original-image pixels."""
    return {"boxes": restore_boxes(detection["boxes"].detach().float().cpu(), width, height, size, policy),
            "scores": detection["scores"].detach().float().cpu(), "labels": detection["labels"].detach().cpu()}


@torch.no_grad()
def detect_files(model, head: str, paths: Sequence[Path], size: int, policy: str, batch_size: int = 8) -> list[dict]:
    """Detections of the composed ``model``'s detection ``head`` for image files (original pixels), in
    order.  Unreadable files raise UserError."""
    model.eval()
    device = next(model.parameters()).device
    transform = detection_transforms(False, size, policy=policy)
    out = []
    for start in range(0, len(paths), batch_size):
        images, sizes = [], []
        for path in paths[start : start + batch_size]:
            pixels = read_rgb(path)
            image, _ = transform(*to_tv(pixels, torch.zeros(0, 4), []))
            images.append(image.as_subclass(torch.Tensor))
            sizes.append((pixels.shape[-1], pixels.shape[-2]))
        detections = model(pixel_values=torch.stack(images).to(device), heads=[head])["heads"][head]["detections"]
        out += [plain(d, w, h, size, policy) for d, (w, h) in zip(detections, sizes)]
    return out
