"""Detection bindings for ``mmsft data check`` (box view, cleaned YOLO copy) and ``mmsft data augment``
(a YOLO copy with new train images)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...dataqc.views import Item, QCData
from ...errors import UserError


def yolo_lines(boxes, labels: list[int], width: int, height: int) -> str:
    """YOLO label lines (class cx cy w h, normalised) for xyxy pixel boxes."""
    lines = [f"{c} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
             for c, (x1, y1, x2, y2) in zip(labels, boxes)]
    return "\n".join(lines) + ("\n" if lines else "")


def _data_yaml(folder: Path, names: list[str], splits, path: str) -> None:
    import yaml

    spec = {"path": path, "names": list(names), **{("val" if s == "validation" else s): f"{s}/images" for s in splits}}
    (folder / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def detection_view(task: str, sets: dict, kind: str = "detection") -> QCData:
    """A view over ``{split: DetectionSet}`` (the YOLO / COCO / VOC loaders' result)."""
    items, names, files = [], None, {}
    for split, dset in sets.items():
        names = names or list(dset.class_names)
        if list(dset.class_names) != names:
            raise UserError(f"split '{split}' has other class names than the first split", where=str(dset.source))
        files[split] = [str(dset.source)]
        for sample in dset.samples:
            items.append(Item(len(items), [names[i] for i in sample.labels], split, str(sample.image_path), split,
                              image=Path(sample.image_path),
                              extra={"boxes": sample.boxes.tolist(), "width": sample.width, "height": sample.height}))
    if not items:
        raise UserError("the task's data has no images", where=task)
    notes = [f"{split}: {dset.summary()}" for split, dset in sets.items()]
    return QCData(task, kind, "image", items, names or [], files, notes=notes)


def view(cfg) -> QCData:
    from .data import load_splits

    return detection_view(cfg.name, load_splits(cfg.data), cfg.kind)


def write_fixed(cfg, data: QCData, removed: dict, relabel: dict, tmp: Path, out: Path) -> None:
    """A YOLO copy of the kept images (labels rewritten) with its ``data.yaml``."""
    for it in data.items:
        if it.id in removed:
            continue
        folder = tmp / it.file_key
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy2(it.image, folder / "images" / it.image.name)
        labels = [data.labels.index(name) for name in it.label]
        (folder / "labels" / (it.image.stem + ".txt")).write_text(yolo_lines(it.extra["boxes"], labels, it.extra["width"], it.extra["height"]))
    _data_yaml(tmp, data.labels, data.file_keys(), ".")


def write_augmented(cfg, raw: dict, entry, tmp: Path, out: Path) -> dict:
    """A YOLO copy: every split's images and labels, plus new train images (``<stem>_aug<k>.jpg``)."""
    from PIL import Image

    from ...augment import augment_rows
    from .data import load_splits

    sets = load_splits(cfg.data)
    counts = {}
    for split, dset in sets.items():
        folder = tmp / split
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir(parents=True)
        for s in dset.samples:
            shutil.copy2(s.image_path, folder / "images" / s.image_path.name)
            (folder / "labels" / f"{s.image_path.stem}.txt").write_text(yolo_lines(s.boxes.tolist(), s.labels, s.width, s.height))
        counts[split] = len(dset.samples)
    rows = [{"image": str(s.image_path), "boxes": s.boxes.tolist(), "labels": s.labels, "width": s.width, "height": s.height}
            for s in sets["train"].samples]
    new, stats = augment_rows(rows, [entry], seed=getattr(cfg.data, "seed", 0), key="image")
    for k, row in enumerate(new):
        stem = f"{row['stem']}_aug{k}"
        Image.fromarray(row["pixels"].permute(1, 2, 0).numpy()).save(tmp / "train" / "images" / f"{stem}.jpg", quality=95)
        (tmp / "train" / "labels" / f"{stem}.txt").write_text(yolo_lines(row["boxes"], row["labels"], row["width"], row["height"]))
    _data_yaml(tmp, sets["train"].class_names, sets, str(out))
    (tmp / "augment.json").write_text(json.dumps({"method": entry.method, "rows": counts, "added": len(new), "stats": stats}, indent=1) + "\n")
    return {"rows": counts, "added_train_images": len(new), "augment": stats}
