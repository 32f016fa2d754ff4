"""Object detection (YOLO / COCO / VOC labels): an image backbone, a neck and a torchvision detector.

Data: every split is loaded and validated up front (``mmsft.vision`` loaders), so a corrupt image or a
bad label line stops the run with file:line before any run folder exists; ``skip_bad: true`` skips and
counts such samples instead (the counts are in the report).  Images are letterboxed to
``image_size`` (see ``mmsft.vision.transforms``); predictions are mapped back to original pixels
before scoring, so mAP is measured against the labels exactly as loaded.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch

from ..errors import UserError
from .base import EvalOutput, Prepared, TaskKind, register_kind, resolve_data_path

SPLITS = ("train", "validation", "test")
GRID_IMAGES = 8


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
        for key in self.splits:
            if key not in SPLITS:
                raise UserError(f"unknown split '{key}'", where=f"{path}.splits.{key}", expected=", ".join(SPLITS))
        if "train" not in self.splits or "test" not in self.splits:
            raise UserError("need splits.train and splits.test", where=f"{path}.splits")
        if self.image_size < 64 or self.image_size % 32:
            raise UserError(f"image_size {self.image_size} is not a multiple of 32 (>= 64)", where=f"{path}.image_size")


def _load_split(spec: DetectionData, split: str, class_names):
    from ..vision import detect_format, load_coco, load_voc, load_yolo

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


def _collate(batch):
    from ..vision import detection_collate

    images, targets = detection_collate(batch)
    return {"images": images, "targets": targets}


@register_kind
class Detection(TaskKind):
    name = "detection"
    DataSpec = DetectionData
    metric_names = ("detection_map",)
    writes_files = True

    @property
    def ModelOptions(self):  # noqa: N802  (the schema lives with the detectors)
        from ..vision.detectors import DetectorOptions

        return DetectorOptions

    def load_data(self, cfg):
        return load_splits(cfg.data)

    def build_model(self, cfg, data):
        from ..vision.detectors import Detector
        from ..vision.trunk import load_image_backbone
        from ..zoo import ZOO

        names = data["train"].class_names if data is not None else cfg.data.class_names
        if data is not None:
            cfg.data.class_names = list(names)  # saved in config.yaml: a loaded run knows its classes
        model = Detector(load_image_backbone(cfg.model.backbone), cfg.model.head, len(names), cfg.model.options)
        model.zoo_entry = ZOO.get(cfg.model.backbone) if cfg.model.backbone in ZOO else None
        model.class_names = names
        return model, None

    def prepare(self, cfg, processor, data) -> Prepared:
        from ..vision import DetectionDataset, detection_transforms

        spec, aug = cfg.data, cfg.data.augment
        train_tf = detection_transforms(True, spec.image_size, policy=spec.resize, hflip_p=aug.hflip,
                                        crop_p=aug.iou_crop, color_jitter=aug.color_jitter)
        eval_tf = detection_transforms(False, spec.image_size, policy=spec.resize)
        splits = {name: DetectionDataset(ds, train_tf if name == "train" else eval_tf) for name, ds in data.items()}
        return Prepared(splits, _collate, {name: [1] * len(ds) for name, ds in splits.items()})

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from tqdm.auto import tqdm

        from ..metrics import compute
        from ..training.batching import iterate_eval
        from ..vision.inference import plain

        model.eval()
        dataset = prepared.splits[split]
        predictions, references = [None] * len(dataset), [None] * len(dataset)
        device = next(model.parameters()).device
        batches = iterate_eval(prepared, split, cfg.train.eval_batch_size, device)
        total = -(-len(dataset) // cfg.train.eval_batch_size)
        for batch, idx in tqdm(batches, total=total, desc=f"eval {split}", leave=False, mininterval=5):
            for i, det in zip(idx, model(batch["images"])["detections"]):
                sample = dataset.samples[i]
                predictions[i] = plain(det, sample.width, sample.height, cfg.data.image_size, cfg.data.resize)
                references[i] = {"boxes": sample.boxes, "labels": torch.as_tensor(sample.labels, dtype=torch.int64)}
        metrics = compute(cfg.metrics, predictions=predictions, references=references)
        return EvalOutput(metrics, predictions, references, {"split": split})

    def predict(self, cfg, model, processor, inputs: list[str], out_dir: Optional[Path] = None) -> list[dict]:
        from ..vision import probe_image
        from ..vision.drawing import annotate
        from ..vision.inference import detect_files

        paths = [Path(p) for p in inputs]
        for path in paths:
            probe_image(path)  # a clear error naming the file, before any output is written
        detections = detect_files(model, paths, cfg.data.image_size, cfg.data.resize)
        names, thresh = model.class_names, cfg.model.options.predict_score_thresh
        rows = []
        for path, det in zip(paths, detections):
            keep = det["scores"] >= thresh
            det = {k: v[keep] for k, v in det.items()}
            row = {"input": str(path), "boxes": [
                {"label": names[int(l)], "score": round(float(s), 4), "box_xyxy": [round(float(v), 1) for v in b]}
                for b, s, l in zip(det["boxes"], det["scores"], det["labels"])]}
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                row["image"], row["json"] = str(out_dir / f"{path.stem}.jpg"), str(out_dir / f"{path.stem}.json")
                annotate(path, det, names).save(row["image"], quality=92)
                Path(row["json"]).write_text(json.dumps(row, indent=2))
            rows.append(row)
        return rows

    def data_summary(self, data) -> dict:
        return {name: {"images": len(ds.samples), "boxes": ds.num_boxes, **({"skipped": dict(ds.skipped)} if ds.skipped else {})}
                for name, ds in data.items()}

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ..vision.drawing import grid_png

        names = data["train"].class_names
        per_class = test.metrics.get("ap_per_class", {})
        counts = Counter(int(l) for ref in test.references for l in ref["labels"])
        rows = [f"| {names[int(k)]} | {counts.get(int(k), 0)} | {v['ap50']:.3f} | {v['ap50_95']:.3f} |" for k, v in sorted(per_class.items())]
        samples = data["test"].samples[:GRID_IMAGES]
        shown = []
        for sample, pred in zip(samples, test.predictions):
            keep = pred["scores"] >= cfg.model.options.predict_score_thresh
            shown.append((sample.image_path, {k: v[keep] for k, v in pred.items()}, {"boxes": sample.boxes, "labels": sample.labels}))
        grid_png(shown, names, run_dir / "test_grid.png")
        sections = [
            "## Per-class AP (test)\n\n| class | test boxes | AP@0.5 | AP@0.5:0.95 |\n|---|---|---|---|\n" + "\n".join(rows) + "\n",
            f"## Test images\n\nThe first {len(shown)} test images; green: true boxes, orange: predictions with score >= "
            f"{cfg.model.options.predict_score_thresh}.\n\n![test images](test_grid.png)\n",
        ]
        skipped = {name: ds for name, ds in data.items() if ds.skipped or ds.dropped_boxes}
        if skipped:
            lines = ["## Skipped samples\n", "| split | skipped (reason = count) | dropped boxes |", "|---|---|---|"]
            lines += [f"| {n} | {', '.join(f'{k}={v}' for k, v in sorted(ds.skipped.items())) or '-'} | "
                      f"{', '.join(f'{k}={v}' for k, v in sorted(ds.dropped_boxes.items())) or '-'} |" for n, ds in skipped.items()]
            issues = [i for ds in skipped.values() for i in ds.issues][:20]
            lines += ["", "First issues:", "", *[f"- {i}" for i in issues], ""]
            sections.append("\n".join(lines))
        return sections
