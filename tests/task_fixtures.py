"""Small real-data task folders shared by the vision tests and the composed-model matrix.

Imported by test modules (``from task_fixtures import ...``); the data comes from the shared
Vehicles-OpenImages copy (never written there: every function copies into ``root``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mmsft.paths import data_root

VEHICLES = data_root() / "vehicles_openimages"


def small_yolo(root: Path, n_train: int = 6, n_eval: int = 3) -> Path:
    """A copy of a few real Vehicles-OpenImages images per split (YOLO layout) under ``root``."""
    for split, src, n in (("train", "train", n_train), ("valid", "valid", n_eval), ("test", "test", n_eval)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for image in sorted((VEHICLES / src / "images").glob("*.jpg"))[:n]:
            shutil.copy(image, root / split / "images" / image.name)
            shutil.copy(VEHICLES / src / "labels" / f"{image.stem}.txt", root / split / "labels" / f"{image.stem}.txt")
    shutil.copy(VEHICLES / "data.yaml", root / "data.yaml")
    return root


def vehicle_crops(root: Path, per_class: dict[str, int]) -> Path:
    """Crops of the largest Bus / Car boxes of the valid split as an ImageFolder tree."""
    from PIL import Image

    from mmsft.vision import load_yolo

    data = load_yolo(VEHICLES / "data.yaml", "valid")
    crops = {"Bus": [], "Car": []}
    for sample in data.samples:
        for box, label in zip(sample.boxes.tolist(), sample.labels):
            name = data.class_names[label]
            if name in crops and min(box[2] - box[0], box[3] - box[1]) >= 64:
                crops[name].append((sample.image_path, box))
    for name, items in crops.items():
        for i, (path, box) in enumerate(items[: sum(per_class.values())]):
            split = "train" if i < per_class["train"] else "val" if i < per_class["train"] + per_class["val"] else "test"
            (root / split / name).mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                im.convert("RGB").crop(tuple(int(v) for v in box)).save(root / split / name / f"{i}.jpg")
    return root
