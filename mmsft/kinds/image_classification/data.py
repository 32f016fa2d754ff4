"""Image classification data: the ``data`` schema, ImageFolder reading and the transforms.

Data layout (torchvision ``ImageFolder``): ``<source>/<split>/<class name>/<image>``.  Every image is
decoded once at load time, so a corrupt file stops the run naming it (or, with ``skip_bad``, is
skipped and counted).  Train images get a random resized crop and a flip; evaluation resizes the
short side and centre-crops (the ImageNet protocol the backbones were trained with).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ...data.splits import check_split_names
from ...errors import UserError
from ...paths import resolve_data_path

SPLITS = ("train", "validation", "test")


@dataclass
class ImageClassificationData:
    source: str  # folder under the data root holding one folder per split
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "validation": "val", "test": "test"})
    labels: Optional[list[str]] = None  # class names in id order; default: the train class folders, sorted
    image_size: int = 224
    augment: bool = True  # random resized crop (scale 0.5-1) + horizontal flip on train
    skip_bad: bool = False  # skip (and count) unreadable images instead of stopping
    validation_fraction: float = 0.15  # carved from train (seeded) when splits has no validation
    seed: int = 0
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    root: Optional[str] = None

    def validate(self, path: str) -> None:
        check_split_names(self.splits, path, SPLITS)


def read_split(folder: Path, labels: Optional[list[str]], skip_bad: bool) -> tuple[list[tuple[Path, int]], list[str], Counter]:
    from ...vision.samples import IMAGE_EXTENSIONS, BadSample, probe_image

    if not folder.is_dir():
        raise UserError("split folder not found", where=str(folder), expected="<source>/<split>/<class>/<image>")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    labels = labels or classes
    ids = {name: i for i, name in enumerate(labels)}
    rows, skipped = [], Counter()
    for name in classes:
        if name not in ids:
            raise UserError(f"class folder '{name}' is not in the label list", where=str(folder / name),
                            expected="one of: " + ", ".join(labels))
        for image in sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
            try:
                probe_image(image)
            except BadSample:
                if not skip_bad:
                    raise
                skipped["unreadable_image"] += 1
                continue
            rows.append((image, ids[name]))
    if not rows:
        raise UserError("empty split: no usable images", where=str(folder))
    return rows, labels, skipped


class Images(torch.utils.data.Dataset):
    def __init__(self, rows, transform):
        self.rows, self.transform = rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        from ...vision.dataset import read_rgb

        path, label = self.rows[i]
        return {"pixel_values": self.transform(read_rgb(path)), "labels": torch.tensor(label)}


def transforms(train: bool, size: int, augment: bool):
    from torchvision.transforms import v2

    if train and augment:
        steps = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])




def load_splits(spec: ImageClassificationData) -> dict:
    """{"train", "validation", "test": [(path, label id)], "labels": names, "skipped": Counter}."""
    base = resolve_data_path(spec, spec.source)
    train, labels, skipped = read_split(base / spec.splits["train"], spec.labels, spec.skip_bad)
    data = {"train": train, "labels": labels, "skipped": skipped}
    for split in ("validation", "test"):
        if split in spec.splits:
            data[split], _, more = read_split(base / spec.splits[split], labels, spec.skip_bad)
            skipped.update(more)
    if "validation" not in data:
        order = list(range(len(train)))
        random.Random(spec.seed).shuffle(order)
        cut = max(1, round(len(order) * spec.validation_fraction))
        data["validation"], data["train"] = [train[i] for i in order[:cut]], [train[i] for i in order[cut:]]
    for split, limit in (("train", spec.max_train_samples), ("validation", spec.max_eval_samples), ("test", spec.max_eval_samples)):
        if limit:
            data[split] = data[split][:limit]
    return data
