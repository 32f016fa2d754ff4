"""Image classification: a zoo / timm / torchvision backbone plus the ``image_classification`` head.

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

from ..errors import UserError
from .base import EvalOutput, Prepared, TaskKind, register_kind, resolve_data_path

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
        for key in self.splits:
            if key not in SPLITS:
                raise UserError(f"unknown split '{key}'", where=f"{path}.splits.{key}", expected=", ".join(SPLITS))
        if "train" not in self.splits or "test" not in self.splits:
            raise UserError("need splits.train and splits.test", where=f"{path}.splits")


def _read_split(folder: Path, labels: Optional[list[str]], skip_bad: bool) -> tuple[list[tuple[Path, int]], list[str], Counter]:
    from ..vision.samples import IMAGE_EXTENSIONS, BadSample, probe_image

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


class _Images(torch.utils.data.Dataset):
    def __init__(self, rows, transform):
        self.rows, self.transform = rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        from ..vision.dataset import read_rgb

        path, label = self.rows[i]
        return {"pixel_values": self.transform(read_rgb(path)), "labels": torch.tensor(label)}


def _transforms(train: bool, size: int, augment: bool):
    from torchvision.transforms import v2

    if train and augment:
        steps = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


@register_kind
class ImageClassification(TaskKind):
    name = "image_classification"
    DataSpec = ImageClassificationData
    metric_names = ("accuracy", "f1_macro", "precision_macro", "recall_macro")

    def load_data(self, cfg):
        spec = cfg.data
        base = resolve_data_path(spec, spec.source)
        train, labels, skipped = _read_split(base / spec.splits["train"], spec.labels, spec.skip_bad)
        data = {"train": train, "labels": labels, "skipped": skipped}
        for split in ("validation", "test"):
            if split in spec.splits:
                data[split], _, more = _read_split(base / spec.splits[split], labels, spec.skip_bad)
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

    def build_model(self, cfg, data):
        from ..training.losses import build_loss
        from ..vision.classifier import ImageClassifier
        from ..vision.trunk import load_image_backbone
        from ..zoo import ZOO

        labels = data["labels"] if data else cfg.data.labels
        if not labels:
            raise UserError("the run's config has no labels", where="data.labels")
        counts = [sum(1 for _, y in data["train"] if y == i) for i in range(len(labels))] if data else None
        model = ImageClassifier(load_image_backbone(cfg.model.backbone), cfg.model.head, len(labels), cfg.model.dropout,
                                cfg.model.head_hidden, build_loss(cfg.loss, counts))
        model.zoo_entry = ZOO.get(cfg.model.backbone) if cfg.model.backbone in ZOO else None
        if data:
            cfg.data.labels = labels  # saved in config.yaml, so a loaded run knows its classes
        return model, None

    def prepare(self, cfg, processor, data) -> Prepared:
        from ..training.batching import stack_collate

        splits = {s: _Images(data[s], _transforms(s == "train", cfg.data.image_size, cfg.data.augment)) for s in SPLITS}
        return Prepared(splits, stack_collate, {s: [1] * len(splits[s]) for s in SPLITS})

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ..metrics import compute
        from ..training.batching import iterate_eval

        model.eval()
        probs, order = [], []
        for batch, idx in iterate_eval(prepared, split, cfg.train.eval_batch_size, next(model.parameters()).device):
            probs.append(model(batch["pixel_values"])["logits"].float().softmax(-1).cpu())
            order += idx
        probs = torch.cat(probs)[torch.argsort(torch.tensor(order))]
        refs = [y for _, y in prepared.splits[split].rows]
        preds = probs.argmax(-1).tolist()
        return EvalOutput(compute(cfg.metrics, predictions=preds, references=refs), preds, refs, {"probs": probs})

    @torch.no_grad()
    def predict(self, cfg, model, processor, inputs: list[str]) -> list[dict]:
        from ..vision.dataset import read_rgb
        from ..vision.samples import probe_image

        model.eval()
        for path in inputs:
            probe_image(path)
        transform = _transforms(False, cfg.data.image_size, False)
        images = torch.stack([transform(read_rgb(p)) for p in inputs])
        probs = model(images.to(next(model.parameters()).device))["logits"].float().softmax(-1).cpu()
        labels = cfg.data.labels
        return [{"input": p, "label": labels[int(q.argmax())], "score": round(float(q.max()), 4),
                 "scores": {n: round(float(v), 4) for n, v in zip(labels, q)}} for p, q in zip(inputs, probs)]

    def data_summary(self, data) -> dict:
        out = {s: len(data[s]) for s in SPLITS}
        return {**out, "skipped": dict(data["skipped"])} if data["skipped"] else out

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ..reporting.plots import confusion_matrix_png

        confusion_matrix_png(test.references, test.predictions, data["labels"], run_dir / "confusion_matrix.png")
        return ["## Confusion matrix (test)\n\n![confusion matrix](confusion_matrix.png)\n"]
