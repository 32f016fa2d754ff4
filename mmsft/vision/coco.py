"""COCO instances JSON: ``images[{id, file_name, width, height}]``, ``annotations[{id, image_id,
category_id, bbox: [x, y, w, h], iscrowd}]``, ``categories[{id, name}]``.

Category ids (1..90 with gaps in MS-COCO) map to contiguous labels 0..K-1 in increasing id order;
``DetectionSet.category_ids[label]`` gives the original id back (for COCO-style evaluation).
Images listed in the JSON without annotations are background images (legal).  Image files on disk that
the JSON does not list are ignored (the JSON defines the split).  Crowd boxes (``iscrowd=1``) cover
many objects and are dropped unless ``include_crowd=True``; their count is in ``dropped_boxes``.
JSON has no useful line numbers, so errors name the file, the image id and the annotation id.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from .boxes import DEFAULT_TOLERANCE, check_box, xywh_to_xyxy
from .samples import BadSample, Collector, DetectionSample, DetectionSet, probe_image


def _default_image_dir(annotations: Path) -> Path:
    """``annotations/instances_val2017.json`` -> ``../val2017`` (the MS-COCO layout), else the JSON's folder."""
    stem = annotations.stem
    split = stem.split("_", 1)[1] if "_" in stem else stem
    for candidate in (annotations.parent.parent / split, annotations.parent / split, annotations.parent / "images"):
        if candidate.is_dir():
            return candidate
    return annotations.parent


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise UserError("COCO annotation file not found", where=str(path)) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"cannot parse COCO JSON: {exc.msg} (column {exc.colno})", where=f"{path}:{exc.lineno}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"COCO JSON is not UTF-8 ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read COCO JSON: {exc.strerror or exc}", where=str(path)) from None
    except RecursionError:
        raise UserError("COCO JSON is nested too deeply", where=str(path)) from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise UserError(f"not a COCO instances file: no {', '.join(missing)}", where=str(path),
                        expected="a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise UserError(f"'{key}' is not a list", where=f"{path}: {key}", expected=f"a JSON array of {key} objects")
    return data


def _is_id(value) -> bool:
    """COCO ids are integers (strings tolerated); anything else cannot index images / categories."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _number(value) -> Optional[float]:
    """A finite JSON number as float, else None (strings, lists, booleans, null, inf and nan are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def load_coco(annotations: Union[str, Path], image_dir: Optional[Union[str, Path]] = None, *,
              include_crowd: bool = False, skip_bad: bool = False, box_tolerance: float = DEFAULT_TOLERANCE,
              decode_images: bool = True) -> DetectionSet:
    """Load a COCO instances JSON; ``image_dir`` defaults to the MS-COCO layout guess."""
    path = Path(annotations)
    data = _read_json(path)
    image_dir = Path(image_dir) if image_dir is not None else _default_image_dir(path)
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or isinstance(c.get("id"), bool) or not isinstance(c.get("id"), int) \
                or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise UserError(f"categories[{i}] is not {{id: integer, name: text}}: {_short(c)}", where=f"{path}: categories",
                            expected="{id, name}")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_ids = [c["id"] for c in categories]
    class_names = [c["name"] for c in categories]
    if len(set(category_ids)) != len(category_ids):
        raise UserError("duplicate category ids", where=f"{path}: categories")
    to_label = {cid: i for i, cid in enumerate(category_ids)}

    collector = Collector(skip_bad)
    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str) or not img["file_name"]:
            collector.reject(BadSample("malformed_label", f"images[{i}] lacks an integer id or a file_name", where=str(path),
                                       expected="{id, file_name, width, height}"))
            continue
        if img["id"] in images:
            collector.reject(BadSample("malformed_label", f"images[{i}] repeats image id {img['id']!r}", where=str(path)))
            continue
        images[img["id"]] = img
    per_image: dict[int, list[dict]] = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            collector.reject(BadSample("malformed_label", f"annotations[{i}] is not an object", where=str(path)))
            continue
        iid = ann.get("image_id")
        if not _is_id(iid) or iid not in images:
            collector.reject(BadSample("label_without_image", f"annotation id {_short(ann.get('id'))} "
                                       f"refers to image id {_short(iid)}, which is not in 'images'", where=str(path)))
            continue
        per_image[iid].append(ann)

    dropped: Counter = Counter()
    samples: list[DetectionSample] = []
    for iid, img in images.items():
        where_img = f"{path} (image id {_short(iid)}, {_short(img['file_name'])})"
        image_path = image_dir / str(img["file_name"])
        try:
            if not image_path.is_file():
                raise BadSample("label_without_image", f"image file {image_path} not found", where=where_img)
            width, height = probe_image(image_path, decode=decode_images, where=where_img)
            declared = (img.get("width"), img.get("height"))
            if declared != (None, None):
                sizes = tuple(_number(v) for v in declared)
                if None in sizes:
                    raise BadSample("malformed_label", f"width / height {_short(declared[0])} x {_short(declared[1])} are not numbers",
                                    where=where_img)
                if tuple(int(v) for v in sizes) != (width, height):
                    raise BadSample("size_mismatch", f"JSON says {declared[0]}x{declared[1]} but the image is {width}x{height}",
                                    where=where_img)
            boxes, labels = [], []
            for ann in per_image.get(iid, []):
                where = f"{path} (image id {iid}, annotation id {_short(ann.get('id'))})"
                if ann.get("iscrowd", 0) and not include_crowd:
                    dropped["crowd"] += 1
                    continue
                category = ann.get("category_id")
                if not isinstance(category, int) or isinstance(category, bool) or category not in to_label:
                    known = ", ".join(map(str, category_ids[:10])) + (" ..." if len(category_ids) > 10 else "")
                    raise BadSample("class_out_of_range", f"category_id {_short(category)} is not in 'categories'",
                                    where=where, expected=f"one of {known}")
                bbox = ann.get("bbox")
                coords = [_number(v) for v in bbox] if isinstance(bbox, list) else []
                if len(coords) != 4 or None in coords:
                    raise BadSample("malformed_label", f"bbox {_short(bbox)} is not 4 numbers", where=where, expected="[x, y, w, h]")
                x, y, w, h = coords
                boxes.append(check_box(xywh_to_xyxy(x, y, w, h), width, height, tolerance=box_tolerance, where=where))
                labels.append(to_label[ann["category_id"]])
            samples.append(DetectionSample(image_path, width, height, boxes, labels))
        except BadSample as exc:
            collector.reject(exc)
    result = collector.finish(samples, class_names, str(path), dropped)
    result.category_ids = category_ids
    return result


def _short(value, most: int = 60) -> str:
    """A JSON value for a one-line message: text as it is (file names read naturally), anything else as ``repr``."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."
