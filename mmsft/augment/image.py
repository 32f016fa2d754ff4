"""Image + box augmentation for detection: the same ``mmsft.vision.detection_transforms`` train
pipeline the detection kind applies on the fly (colour jitter, horizontal flip, IoU crop), here used
to materialise new train images with ``mmsft data augment`` (the detection kind writes the YOLO copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .base import AugmentMethod, register_method

DETECTION_KINDS = ("detection",)


@dataclass
class BoxOptions:
    hflip: float = 0.5
    iou_crop: float = 0.5
    color_jitter: bool = True

    def validate(self, path: str) -> None:
        for name in ("hflip", "iou_crop"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be in [0, 1]", where=f"{path}.{name}" if path else name)


@register_method
class ImageBoxes(AugmentMethod):
    name, kinds, Options = "image_boxes", DETECTION_KINDS, BoxOptions
    description = "detection: colour jitter, flip and IoU crop of image and boxes (mmsft.vision.detection_transforms)"

    def transform(self, row, ctx, options, rng):
        """``row``: {"image": path, "boxes": xyxy list, "labels": ids, "width", "height"} -> same keys,
        with ``pixels`` (uint8 CHW tensor) instead of a path."""
        import torch

        from ..vision import detection_transforms, read_rgb
        from ..vision.transforms import to_tv

        size = max(row["width"], row["height"])
        pipeline = detection_transforms(True, size, policy="letterbox", hflip_p=options.hflip, crop_p=options.iou_crop,
                                        color_jitter=options.color_jitter)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng.randrange(2**31))
            image, target = pipeline(*to_tv(read_rgb(row["image"]), row["boxes"], row["labels"]))
        pixels = (image.as_subclass(torch.Tensor).clamp(0, 1) * 255).round().to(torch.uint8)
        boxes = target["boxes"].as_subclass(torch.Tensor).reshape(-1, 4)
        if boxes.shape[0] == 0 and row["labels"]:
            return None  # the crop lost every object
        return {"pixels": pixels, "boxes": boxes.tolist(), "labels": target["labels"].tolist(),
                "width": size, "height": size, "stem": Path(row["image"]).stem}
