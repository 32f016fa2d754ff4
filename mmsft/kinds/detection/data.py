"""Detection data: the ``data`` schema and loading every split (YOLO / COCO / VOC) up front.

Every split is loaded and validated up front (``mmsft.vision`` loaders), so a corrupt image or a
bad label line stops the run with file:line before any run folder exists; ``skip_bad: true`` skips and
counts such samples instead (the counts are in the report).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Optional

from ...data.splits import check_split_names
from ...errors import UserError
from ...paths import resolve_data_path

SPLITS = ("train", "validation", "test")


@dataclass
class AugmentSpec:
    hflip: float = 0.5  # probability of a horizontal flip
    iou_crop: float = 0.5  # probability of an SSD-style IoU crop (scale/crop that keeps objects)
    color_jitter: bool = True


@dataclass
class DetectionData:
    source: str  # under the data root: YOLO data.yaml or folder, VOC root, or COCO image folder
    splits: dict[str, str]  # train/validation/test -> YOLO/VOC split name, or COCO annotation JSON under the root
    format: Literal["auto", "yolo", "coco", "voc"] = "auto"
    class_names: Optional[list[str]] = None  # default: the dataset's own (data.yaml names, COCO categories)
    image_size: int = 416  # square model input
    resize: Literal["letterbox", "resize"] = "letterbox"
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    skip_bad: bool = False  # skip (and count) bad images / label files instead of stopping
    missing_label: Literal["error", "background"] = "error"  # YOLO: an image without a label file
    box_tolerance: float = 0.005  # boxes may stick out of the image by this fraction (then clipped)
    validation_fraction: float = 0.15  # carved from train (seeded) when splits has no validation
    seed: int = 0
    max_train_samples: Optional[int] = None  # first N (quick runs, tests)
    max_eval_samples: Optional[int] = None  # first N of validation and test
    root: Optional[str] = None  # data root; default: MMSFT_DATA_ROOT or ../shared/data

    def validate(self, path: str) -> None:
        check_split_names(self.splits, path, SPLITS)
        if self.image_size < 64 or self.image_size % 32:
            raise UserError(f"image_size {self.image_size} is not a multiple of 32 (>= 64)", where=f"{path}.image_size")


def _load_split(spec: DetectionData, split: str, class_names):
    from ...vision import detect_format, load_coco, load_voc, load_yolo

    source = resolve_data_path(spec, spec.source)
    fmt = detect_format(source) if spec.format == "auto" else spec.format
    common = dict(skip_bad=spec.skip_bad, box_tolerance=spec.box_tolerance)
    name = spec.splits[split]
    if fmt == "yolo":
        return load_yolo(source, name, class_names=class_names, missing_label=spec.missing_label, **common)
    if fmt == "voc":
        return load_voc(source, split=name, class_names=class_names, **common)
    data = load_coco(resolve_data_path(spec, name), source, **common)
    if class_names is not None and data.class_names != list(class_names):
        raise UserError(f"categories {data.class_names} differ from {list(class_names)}", where=str(resolve_data_path(spec, name)))
    return data


def load_splits(spec: DetectionData) -> dict:
    """split -> DetectionSet, class ids aligned with the train split's class list."""
    data = {"train": _load_split(spec, "train", spec.class_names)}
    names = data["train"].class_names
    for split in ("validation", "test"):
        if split in spec.splits:
            data[split] = _load_split(spec, split, names)
    if "validation" not in data:
        import copy

        train = data["train"]
        order = list(range(len(train.samples)))
        random.Random(spec.seed).shuffle(order)
        cut = max(1, round(len(order) * spec.validation_fraction))
        data["validation"] = copy.copy(train)
        data["validation"].samples = [train.samples[i] for i in sorted(order[:cut])]
        data["train"] = copy.copy(train)
        data["train"].samples = [train.samples[i] for i in sorted(order[cut:])]
    for split, limit in (("train", spec.max_train_samples), ("validation", spec.max_eval_samples), ("test", spec.max_eval_samples)):
        if limit:
            data[split].samples = data[split].samples[:limit]
    return data


def collate(batch):
    from ...vision import detection_collate

    images, targets = detection_collate(batch)
    return {"pixel_values": images, "targets": targets}
