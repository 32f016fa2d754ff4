"""YOLO (Ultralytics / Roboflow) detection labels: one ``.txt`` per image, lines ``class cx cy w h``
normalised to [0, 1]; class names from ``data.yaml`` (``names`` list or {id: name} dict).

Layout: ``<split>/images/x.jpg`` <-> ``<split>/labels/x.txt`` (the last ``images`` path component is
replaced by ``labels``; with no ``images`` component the label sits next to the image).

Missing label files.  An *empty* label file always means "background image, no objects" (legal).  A
*missing* label file is ambiguous: Ultralytics reads it as background, but it is far more often a lost
or failed export, and silently training on unlabeled positives teaches the model to miss objects.  So
``missing_label="error"`` (default) treats it as ``image_without_label``; ``missing_label="background"``
gives the Ultralytics meaning.  A label file without an image is always ``label_without_image``.
``classes.txt`` (written by LabelImg) in a labels folder is not a label file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

from ..errors import UserError
from .boxes import DEFAULT_TOLERANCE, check_box, cxcywh_norm_to_xyxy
from .samples import IMAGE_EXTENSIONS, BadSample, Collector, DetectionSample, DetectionSet, probe_image

_SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_data_yaml(path: Union[str, Path]) -> tuple[dict, Path, list[str]]:
    """(parsed yaml, dataset root, class names).  A ``path:`` that does not exist here (e.g. the
    exporter's Windows path) is ignored and the yaml's folder is the root."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"dataset yaml is not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read dataset yaml: {exc.strerror or exc}", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"invalid dataset yaml: {getattr(exc, 'problem', None) or type(exc).__name__}",
                        where=f"{path}:{mark.line + 1}" if mark else str(path)) from None
    if not isinstance(data, dict) or "names" not in data:
        raise UserError("dataset yaml has no 'names'", where=str(path), expected="names: [class0, class1, ...]")
    names = data["names"]
    expected = "names: [class0, class1, ...] or {0: class0, 1: class1, ...}"
    if isinstance(names, dict):
        by_id = {}
        for key, value in names.items():
            if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())):
                raise UserError(f"'names' key {key!r} is not a class id", where=f"{path}: names", expected=expected)
            by_id[int(key)] = value
        if sorted(by_id) != list(range(len(by_id))):
            raise UserError(f"'names' ids must be 0..{len(by_id) - 1}", where=f"{path}: names", expected=expected)
        names = [by_id[k] for k in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise UserError("'names' is not a list of class names", where=f"{path}: names", expected=expected)
    bad = [n for n in names if not isinstance(n, (str, int, float)) or isinstance(n, bool) or not str(n).strip()]
    if bad:
        raise UserError(f"class name {bad[0]!r} is not text", where=f"{path}: names", expected=expected)
    names = [str(n) for n in names]
    if "nc" in data:
        nc = data["nc"]
        if isinstance(nc, bool) or not isinstance(nc, int) or nc != len(names):
            raise UserError(f"nc={nc!r} but {len(names)} names", where=f"{path}: nc", expected=f"nc: {len(names)}")
    root = path.parent
    if data.get("path"):
        declared = Path(str(data["path"])).expanduser()
        declared = declared if declared.is_absolute() else path.parent / declared
        if declared.is_dir():
            root = declared
    return data, root, names


def _split_image_dirs(data: dict, root: Path, split: str, yaml_path: Path) -> list[Path]:
    key = _SPLIT_KEYS.get(split, split)
    value = data.get(key, data.get(split))
    if value is None:
        raise UserError(f"split '{split}' is not in the dataset yaml", where=str(yaml_path),
                        expected="one of: " + ", ".join(k for k in ("train", "val", "test") if k in data))
    dirs = []
    for item in value if isinstance(value, list) else [value]:
        rel = Path(str(item))
        candidates = [rel] if rel.is_absolute() else [root / rel, root / Path(*[p for p in rel.parts if p != ".."])]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise UserError(f"split '{split}' folder {item} not found", where=str(yaml_path), expected=f"a folder under {root}")
        dirs.append(found)
    return dirs


def label_path_for(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _list_images(folder: Path) -> list[Path]:
    if folder.is_file() and folder.suffix == ".txt":  # Ultralytics list file: one image path per line
        lines = [ln.strip() for ln in folder.read_text().splitlines() if ln.strip()]
        return [p if p.is_absolute() else folder.parent / p for p in map(Path, lines)]
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def parse_label_file(path: Path, width: int, height: int, num_classes: int, *,
                     tolerance: float = DEFAULT_TOLERANCE) -> tuple[list, list[int]]:
    """Boxes (xyxy pixels, clipped) and labels from one YOLO label file; BadSample names file:line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadSample("malformed_label", f"cannot read label file: {exc}", where=str(path)) from None
    boxes, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 5:
            raise BadSample("malformed_label", f"{len(fields)} fields in '{line.strip()}'", where=where,
                            expected="5 fields: class cx cy w h")
        try:
            cls_f = float(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise BadSample("malformed_label", f"non-numeric value in '{line.strip()}'", where=where,
                            expected="class cx cy w h as numbers") from None
        if not math.isfinite(cls_f) or not cls_f.is_integer():
            raise BadSample("malformed_label", f"class id '{fields[0]}' is not an integer", where=where)
        cls = int(cls_f)
        if not 0 <= cls < num_classes:
            raise BadSample("class_out_of_range", f"class id {cls} is outside the class list", where=where,
                            expected=f"0..{num_classes - 1}")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise BadSample("malformed_label", f"non-finite value in '{line.strip()}'", where=where)
        if w <= 0 or h <= 0:
            raise BadSample("empty_box", f"box width/height {w:g}x{h:g} is not positive", where=where)
        if max(cx, cy, w, h) > 1.5:
            raise BadSample("box_out_of_image", f"coordinates {cx:g} {cy:g} {w:g} {h:g} are not normalised", where=where,
                            expected="cx cy w h divided by the image width/height (0..1)")
        boxes.append(check_box(cxcywh_norm_to_xyxy(cx, cy, w, h, width, height), width, height,
                               tolerance=tolerance, where=where))
        labels.append(cls)
    return boxes, labels


def load_yolo(data: Union[str, Path], split: str = "train", *, class_names: Optional[Sequence[str]] = None,
              missing_label: Literal["error", "background"] = "error", skip_bad: bool = False,
              box_tolerance: float = DEFAULT_TOLERANCE, decode_images: bool = True) -> DetectionSet:
    """Load one split of a YOLO dataset.

    ``data``: a ``data.yaml``, a folder holding one, or an images folder / split folder (then
    ``class_names`` is required).  ``class_names`` overrides the yaml's names.
    """
    if missing_label not in ("error", "background"):
        raise UserError(f"missing_label='{missing_label}'", expected="'error' or 'background'")
    data = Path(data)
    yaml_path = data if data.suffix in (".yaml", ".yml") else data / "data.yaml"
    if yaml_path.is_file():
        parsed, root, names = read_data_yaml(yaml_path)
        image_dirs = _split_image_dirs(parsed, root, split, yaml_path)
    elif data.is_dir():
        if class_names is None:
            raise UserError("no data.yaml here, so class names are unknown", where=str(data),
                            expected="a data.yaml or class_names=[...]")
        names = []
        image_dirs = [data / "images" if (data / "images").is_dir() else data]
    else:
        raise UserError("YOLO dataset not found", where=str(data), expected="a data.yaml or a folder of images")
    names = [str(n) for n in class_names] if class_names is not None else names
    source = f"{yaml_path if yaml_path.is_file() else data} [{split}]"

    collector = Collector(skip_bad)
    samples: list[DetectionSample] = []
    seen_labels: set[Path] = set()
    images = [img for d in image_dirs for img in _list_images(d)]
    for image in images:
        label = label_path_for(image)
        seen_labels.add(label.resolve())
        try:
            width, height = probe_image(image, decode=decode_images)
            if label.is_file():
                boxes, labels = parse_label_file(label, width, height, len(names), tolerance=box_tolerance)
            elif missing_label == "background":
                boxes, labels = [], []
            else:
                raise BadSample("image_without_label", f"no label file {label}", where=str(image),
                                expected="a label file (empty for a background image) or missing_label='background'")
            samples.append(DetectionSample(image, width, height, boxes, labels))
        except BadSample as exc:
            collector.reject(exc)
    for d in image_dirs:
        label_dir = label_path_for(d / "x.jpg").parent
        if label_dir == d or not label_dir.is_dir():
            continue
        for label in sorted(label_dir.rglob("*.txt")):
            if label.name != "classes.txt" and label.resolve() not in seen_labels:
                collector.reject(BadSample("label_without_image", "label file has no matching image", where=str(label),
                                           expected=f"an image with the same stem under {d}"))
    return collector.finish(samples, names, source)
