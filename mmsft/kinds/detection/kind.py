"""Object detection: detection heads (neck + torchvision detector) on an image backbone's feature maps.

Images are letterboxed to ``image_size`` (see ``mmsft.vision.transforms``); predictions are mapped
back to original pixels before scoring, so mAP is measured against the labels exactly as loaded.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import torch

from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from . import qc
from .data import DetectionData, collate, load_splits

GRID_IMAGES = 8


@register_kind
class Detection(TaskKind):
    name = "detection"
    DataSpec = DetectionData
    metric_inputs = "boxes"
    backbone_family = "image"
    head_types = ("fcos", "retinanet", "ssdlite", "fasterrcnn")
    writes_files = True

    def load_data(self, cfg):
        return load_splits(cfg.data)

    def build_heads(self, cfg, data, backbone) -> dict:
        from ...registry import HEADS

        names = data["train"].class_names if data is not None else cfg.data.class_names
        if data is not None:
            cfg.data.class_names = list(names)  # saved in config.yaml: a loaded run knows its classes
        return {name: HEADS.get(spec.type)(backbone, spec.options, num_classes=len(names)) for name, spec in cfg.model.heads.items()}

    def prepare(self, cfg, processor, data) -> Prepared:
        from ...vision import DetectionDataset, detection_transforms

        spec, aug = cfg.data, cfg.data.augment
        train_tf = detection_transforms(True, spec.image_size, policy=spec.resize, hflip_p=aug.hflip,
                                        crop_p=aug.iou_crop, color_jitter=aug.color_jitter)
        eval_tf = detection_transforms(False, spec.image_size, policy=spec.resize)
        splits = {name: DetectionDataset(ds, train_tf if name == "train" else eval_tf) for name, ds in data.items()}
        return Prepared(splits, collate, {name: [1] * len(ds) for name, ds in splits.items()}, deterministic_train=False)

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from tqdm.auto import tqdm

        from ...metrics import compute
        from ...training.batching import iterate_eval
        from ...vision.inference import plain

        head = single_head(cfg)
        model.eval()
        dataset = prepared.splits[split]
        predictions, references = [None] * len(dataset), [None] * len(dataset)
        device = next(model.parameters()).device
        batches = iterate_eval(prepared, split, cfg.train.eval_batch_size, device)
        total = -(-len(dataset) // cfg.train.eval_batch_size)
        for batch, idx in tqdm(batches, total=total, desc=f"eval {split}", leave=False, mininterval=5):
            for i, det in zip(idx, model(pixel_values=batch["pixel_values"], heads=[head])["heads"][head]["detections"]):
                sample = dataset.samples[i]
                predictions[i] = plain(det, sample.width, sample.height, cfg.data.image_size, cfg.data.resize)
                references[i] = {"boxes": sample.boxes, "labels": torch.as_tensor(sample.labels, dtype=torch.int64)}
        metrics = compute(self.head_metrics(cfg, head), predictions=predictions, references=references)
        return EvalOutput(metrics, predictions, references, {"split": split})

    def predict(self, cfg, model, processor, inputs: list[str], out_dir: Optional[Path] = None) -> list[dict]:
        from ...vision import probe_image
        from ...vision.drawing import annotate
        from ...vision.inference import detect_files

        paths = [Path(p) for p in inputs]
        for path in paths:
            probe_image(path)  # a clear error naming the file, before any output is written
        head = single_head(cfg)
        detections = detect_files(model, head, paths, cfg.data.image_size, cfg.data.resize)
        names, thresh = cfg.data.class_names, cfg.model.heads[head].options.predict_score_thresh
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
        from ...vision.drawing import grid_png

        names = data["train"].class_names
        thresh = cfg.model.heads[single_head(cfg)].options.predict_score_thresh
        per_class = test.metrics.get("ap_per_class", {})
        counts = Counter(int(l) for ref in test.references for l in ref["labels"])
        rows = [f"| {names[int(k)]} | {counts.get(int(k), 0)} | {v['ap50']:.3f} | {v['ap50_95']:.3f} |" for k, v in sorted(per_class.items())]
        samples = data["test"].samples[:GRID_IMAGES]
        shown = []
        for sample, pred in zip(samples, test.predictions):
            keep = pred["scores"] >= thresh
            shown.append((sample.image_path, {k: v[keep] for k, v in pred.items()}, {"boxes": sample.boxes, "labels": sample.labels}))
        grid_png(shown, names, run_dir / "test_grid.png")
        sections = [
            "## Per-class AP (test)\n\n| class | test boxes | AP@0.5 | AP@0.5:0.95 |\n|---|---|---|---|\n" + "\n".join(rows) + "\n",
            f"## Test images\n\nThe first {len(shown)} test images; green: true boxes, orange: predictions with score >= "
            f"{thresh}.\n\n![test images](test_grid.png)\n",
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

    qc_view = staticmethod(qc.view)
    write_fixed = staticmethod(qc.write_fixed)
    write_augmented = staticmethod(qc.write_augmented)
