"""Length statistics in the task's own tokenizer, class balance, and detection box statistics."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .views import QCData

# COCO's size buckets, in pixels of the stored image
SMALL, MEDIUM = 32 ** 2, 96 ** 2


def _summary(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    arr = np.asarray(values)
    return {"count": int(arr.size), "mean": round(float(arr.mean()), 1), "p50": int(np.percentile(arr, 50)),
            "p95": int(np.percentile(arr, 95)), "max": int(arr.max()), "min": int(arr.min())}


def token_lengths(data: QCData) -> list[int]:
    """Token count (with special tokens) of every item, with the task backbone's tokenizer."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ..zoo import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(data.backbone).path)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "sequence longer than the model maximum" is what we measure
    try:
        lengths = []
        texts = [it.extra.get("full_text", it.text) for it in data.items]  # conversations: every turn
        for start in range(0, len(texts), 2048):
            lengths.extend(len(ids) for ids in tokenizer(texts[start : start + 2048], truncation=False)["input_ids"])
    finally:
        hf_logging.set_verbosity(level)
    return lengths


def length_stats(data: QCData, lengths: list[int]) -> dict:
    """Per effective split: token-length summary and the share cut at the task's ``max_length``."""
    out = {"tokenizer": data.backbone, "max_length": data.max_length, "by_split": {}}
    words = [len(it.text.split()) for it in data.items]
    for split in data.splits():
        ids = [it.id for it in data.by_split(split)]
        tok = [lengths[i] for i in ids]
        cut = sum(1 for n in tok if data.max_length and n > data.max_length)
        out["by_split"][split] = {"tokens": _summary(tok), "words": _summary([words[i] for i in ids]),
                                  "truncated": cut, "truncated_share": round(cut / max(len(tok), 1), 4)}
    all_cut = sum(1 for n in lengths if data.max_length and n > data.max_length)
    out["truncated"], out["truncated_share"] = all_cut, round(all_cut / max(len(lengths), 1), 4)
    return out


def class_balance(data: QCData) -> dict:
    """Per effective split and per files key: count per class, imbalance ratio (largest / smallest)."""
    def counts(items) -> dict:
        c = Counter(lab for it in items for lab in (it.label if isinstance(it.label, list) else [it.label]))
        return {name: c.get(name, 0) for name in data.labels}

    out = {"by_split": {}, "by_file_key": {}}
    for split in data.splits():
        out["by_split"][split] = counts(data.by_split(split))
    for key in data.file_keys():
        out["by_file_key"][key] = counts([it for it in data.items if it.file_key == key])
    train = out["by_split"].get("train") or next(iter(out["by_split"].values()))
    present = [v for v in train.values() if v > 0]
    out["imbalance_ratio"] = round(max(present) / min(present), 2) if present else None
    out["missing_in_train"] = [name for name, v in train.items() if v == 0]
    out["smallest"] = min(train, key=train.get) if train else None
    out["largest"] = max(train, key=train.get) if train else None
    return out


def detection_stats(data: QCData) -> dict:
    """Boxes per image, box sizes (COCO small/medium/large, relative area) and classes, per split."""
    out = {}
    for split in data.splits():
        items = data.by_split(split)
        per_image = [len(it.label) for it in items]
        areas, rel = [], []
        for it in items:
            for x1, y1, x2, y2 in it.extra.get("boxes", []):
                area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
                areas.append(area)
                rel.append(area / max(it.extra["width"] * it.extra["height"], 1))
        sizes = Counter("small" if a < SMALL else "medium" if a < MEDIUM else "large" for a in areas)
        out[split] = {"images": len(items), "boxes": int(sum(per_image)), "images_without_boxes": sum(1 for n in per_image if n == 0),
                      "boxes_per_image": _summary(per_image), "size_buckets": {k: sizes.get(k, 0) for k in ("small", "medium", "large")},
                      "relative_area": {"p5": round(float(np.percentile(rel, 5)), 4), "p50": round(float(np.percentile(rel, 50)), 4),
                                        "p95": round(float(np.percentile(rel, 95)), 4)} if rel else {},
                      "_per_image": per_image, "_relative_area": rel}
    return out
