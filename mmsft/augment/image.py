"""Image + box augmentation for detection: the same ``mmsft.vision.detection_transforms`` train
pipeline the detection kind applies on the fly (colour jitter, horizontal flip, IoU crop), here used
to materialise new train images with ``mmsft data augment`` (a YOLO copy of the dataset).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .base import AugmentEntry, AugmentMethod, augment_rows, register_method
from .materialise import MATERIALISERS

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


def _yolo_lines(boxes, labels, width: int, height: int) -> str:
    lines = [f"{c} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
             for c, (x1, y1, x2, y2) in zip(labels, boxes)]
    return "\n".join(lines) + ("\n" if lines else "")


@MATERIALISERS.register("detection")
def write_detection(cfg, raw: dict, entry: AugmentEntry, tmp: Path, out: Path) -> dict:
    """A YOLO copy: every split's images and labels, plus new train images (``<stem>_aug<k>.jpg``)."""
    import yaml
    from PIL import Image

    from ..kinds import KINDS

    sets = KINDS.get(cfg.kind).load_data(cfg)
    names = list(sets["train"].class_names)
    counts = {}
    for split, dset in sets.items():
        folder = tmp / split
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir(parents=True)
        for s in dset.samples:
            shutil.copy2(s.image_path, folder / "images" / s.image_path.name)
            (folder / "labels" / f"{s.image_path.stem}.txt").write_text(_yolo_lines(s.boxes.tolist(), s.labels, s.width, s.height))
        counts[split] = len(dset.samples)
    rows = [{"image": str(s.image_path), "boxes": s.boxes.tolist(), "labels": s.labels, "width": s.width, "height": s.height}
            for s in sets["train"].samples]
    new, stats = augment_rows(rows, [entry], seed=getattr(cfg.data, "seed", 0), key="image")
    for k, row in enumerate(new):
        stem = f"{row['stem']}_aug{k}"
        Image.fromarray(row["pixels"].permute(1, 2, 0).numpy()).save(tmp / "train" / "images" / f"{stem}.jpg", quality=95)
        (tmp / "train" / "labels" / f"{stem}.txt").write_text(_yolo_lines(row["boxes"], row["labels"], row["width"], row["height"]))
    spec = {"path": str(out), "names": names, **{("val" if s == "validation" else s): f"{s}/images" for s in sets}}
    (tmp / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp / "augment.json").write_text(json.dumps({"method": entry.method, "rows": counts, "added": len(new), "stats": stats}, indent=1) + "\n")
    return {"rows": counts, "added_train_images": len(new), "augment": stats}
