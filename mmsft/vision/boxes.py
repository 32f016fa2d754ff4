"""Box conversions and checks.  Internal format: xyxy in pixels, float32, origin top-left.

Tolerance: a box may stick out of the image by ``tolerance * side`` (at least 1 pixel) -- rounding
from normalised or 1-based coordinates -- and is then clipped; further out is ``box_out_of_image``.
A box with zero or negative width/height after clipping is ``empty_box``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .samples import BadSample

DEFAULT_TOLERANCE = 0.005  # fraction of the image side (0.005 * 416 = 2.1 px), never below 1 px


def cxcywh_norm_to_xyxy(cx: float, cy: float, w: float, h: float, width: int, height: int) -> tuple[float, float, float, float]:
    """YOLO (normalised centre, size) -> pixel xyxy."""
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """COCO (top-left, size) -> xyxy."""
    return (x, y, x + w, y + h)


def xyxy_to_cxcywh_norm(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def check_box(box: Sequence[float], width: int, height: int, *, tolerance: float = DEFAULT_TOLERANCE,
              where: str | None = None) -> tuple[float, float, float, float]:
    """Validate one xyxy pixel box against a ``width`` x ``height`` image; return it clipped."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BadSample("malformed_label", f"box {_fmt((x1, y1, x2, y2))} has a non-finite coordinate", where=where)
    if x2 <= x1 or y2 <= y1:
        raise BadSample("empty_box", f"box {_fmt((x1, y1, x2, y2))} has zero or negative area", where=where,
                        expected="x2 > x1 and y2 > y1")
    tol_x, tol_y = max(1.0, tolerance * width), max(1.0, tolerance * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        raise BadSample(
            "box_out_of_image",
            f"box {_fmt((x1, y1, x2, y2))} lies outside the {width}x{height} image",
            where=where,
            expected=f"coordinates within the image (tolerance {tol_x:.1f}x{tol_y:.1f} px)",
        )
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        raise BadSample("empty_box", f"box {_fmt((x1, y1, x2, y2))} has zero area after clipping to the image", where=where)
    return (x1, y1, x2, y2)


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror xyxy boxes in an image of ``width``: (x1, y1, x2, y2) -> (W - x2, y1, W - x1, y2)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def letterbox_params(width: int, height: int, size: int) -> tuple[float, int, int, int, int]:
    """(scale, new_w, new_h, pad_left, pad_top) to fit ``width`` x ``height`` into a ``size`` square."""
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return scale, new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def unletterbox_boxes(boxes: torch.Tensor, width: int, height: int, size: int) -> torch.Tensor:
    """Map xyxy boxes predicted on the letterboxed square back to the original image, clipped."""
    _, new_w, new_h, left, top = letterbox_params(width, height, size)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).clone()
    boxes[:, 0::2] = ((boxes[:, 0::2] - left) * (width / new_w)).clamp(0, width)
    boxes[:, 1::2] = ((boxes[:, 1::2] - top) * (height / new_h)).clamp(0, height)
    return boxes


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in box) + "]"
