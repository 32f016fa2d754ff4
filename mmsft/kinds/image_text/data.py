"""Image + text data: COCO captions JSON (and instances JSON for object categories), per split.

Every image id, caption and category is checked when loading: a caption whose image is not in the
file, an image without any caption, an instance whose category is not in the category list, or an
image file that cannot be read stops the run naming the file and the id (exit 2, nothing written).
A validation split missing from ``data.splits`` is carved from train by image (seeded).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ...data.splits import check_split_names
from ...errors import UserError
from ...paths import resolve_data_path

SPLITS = ("train", "validation", "test")


@dataclass
class SplitFiles:
    captions: str  # COCO captions JSON under the data root
    images: str  # folder of the split's images under the data root
    instances: Optional[str] = None  # COCO instances JSON (object categories); needed for multi-label tasks


@dataclass
class ImageTextData:
    splits: dict[str, SplitFiles]  # train / validation / test
    inputs: Literal["image+text", "image", "text"] = "image+text"  # multi-label: what the model sees
    image_size: int = 224
    validation_fraction: float = 0.15  # carved from train (seeded, by image) when splits has no validation
    seed: int = 0
    eval_caption: int = 0  # multi-label evaluation: which of an image's captions goes with it
    max_train_images: Optional[int] = None
    root: Optional[str] = None
    class_names: Optional[list[str]] = None  # filled from the instances JSON; saved with the run

    def validate(self, path: str) -> None:
        check_split_names(self.splits, path, SPLITS)
        if self.image_size < 32:
            raise UserError(f"image_size must be >= 32, got {self.image_size}", where=f"{path}.image_size")
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}", where=f"{path}.validation_fraction")


@dataclass
class ImageRow:
    image_id: int
    path: Path
    captions: list[str]
    labels: list[int] = field(default_factory=list)  # category indices present in the image


def _json(path: Path) -> dict:
    if not path.is_file():
        raise UserError("file not found", where=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"not a COCO JSON file ({exc})", where=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise UserError("not a COCO JSON file (needs 'images' and 'annotations' lists)", where=str(path))
    return data


def _categories(instances: dict, path: Path) -> tuple[list[str], dict[int, int]]:
    cats = instances.get("categories")
    if not isinstance(cats, list) or not cats:
        raise UserError("the instances file has no 'categories' list", where=str(path))
    cats = sorted(cats, key=lambda c: c["id"])
    return [c["name"] for c in cats], {c["id"]: k for k, c in enumerate(cats)}


def read_split(spec: ImageTextData, split: str, class_names: Optional[list[str]] = None) -> tuple[list[ImageRow], Optional[list[str]]]:
    """The split's images with their captions (and category indices), checked."""
    from ...vision.samples import probe_image

    files = spec.splits[split]
    captions_path = resolve_data_path(spec, files.captions)
    folder = resolve_data_path(spec, files.images)
    data = _json(captions_path)
    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise UserError(f"image entry without id / file_name: {str(img)[:80]}", where=str(captions_path))
        images[img["id"]] = ImageRow(img["id"], folder / img["file_name"], [])
    for ann in data["annotations"]:
        image_id, caption = ann.get("image_id"), ann.get("caption")
        if image_id not in images:
            raise UserError(f"caption {ann.get('id')} is for image id {image_id}, which the file does not list", where=str(captions_path),
                            expected="captions of listed images only")
        if not isinstance(caption, str) or not caption.strip():
            raise UserError(f"caption {ann.get('id')} (image id {image_id}) is empty", where=str(captions_path))
        images[image_id].captions.append(" ".join(caption.split()))
    for row in images.values():
        if not row.captions:
            raise UserError(f"image id {row.image_id} ({row.path.name}) has no caption", where=str(captions_path), expected="at least one caption per image")
        probe_image(row.path)
    if files.instances:
        instances_path = resolve_data_path(spec, files.instances)
        instances = _json(instances_path)
        names, index = _categories(instances, instances_path)
        if class_names is not None and names != list(class_names):
            raise UserError("categories differ from the train split's", where=str(instances_path))
        for ann in instances["annotations"]:
            if ann.get("category_id") not in index:
                raise UserError(f"instance {ann.get('id')} has category id {ann.get('category_id')}, outside the category list",
                                where=str(instances_path), expected="ids of 'categories'")
            row = images.get(ann.get("image_id"))
            if row is not None and index[ann["category_id"]] not in row.labels:
                row.labels.append(index[ann["category_id"]])
        class_names = names
    return [images[k] for k in sorted(images)], class_names


def load_splits(spec: ImageTextData) -> dict:
    """{"train", "validation", "test": [ImageRow], "class_names": [...] or None}."""
    train, names = read_split(spec, "train")
    data = {"train": train, "class_names": names}
    for split in ("validation", "test"):
        if split in spec.splits:
            data[split], _ = read_split(spec, split, names)
    if "validation" not in data:
        order = list(range(len(train)))
        random.Random(spec.seed).shuffle(order)
        cut = max(1, round(len(order) * spec.validation_fraction))
        data["validation"] = [train[i] for i in sorted(order[:cut])]
        data["train"] = [train[i] for i in sorted(order[cut:])]
    if spec.max_train_images:
        data["train"] = data["train"][: spec.max_train_images]
    return data


def image_transform(size: int):
    """Resize the short side and centre-crop (the ImageNet protocol the backbones were trained with)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True)])
