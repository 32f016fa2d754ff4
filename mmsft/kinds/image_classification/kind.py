"""Image classification: classification heads on the average-pooled last feature map of an image backbone."""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import UserError
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from . import qc
from .data import SPLITS, ImageClassificationData, Images, load_splits, transforms


@register_kind
class ImageClassification(TaskKind):
    name = "image_classification"
    DataSpec = ImageClassificationData
    backbone_family = "image"
    head_types = ("classification",)

    def load_data(self, cfg):
        return load_splits(cfg.data)

    def data_summary(self, data) -> dict:
        out = {s: len(data[s]) for s in SPLITS}
        return {**out, "skipped": dict(data["skipped"])} if data["skipped"] else out

    def adapt_backbone(self, cfg, backbone, processor) -> None:
        backbone.out_indices = [len(backbone.blocks()) - 1]  # the last (pretrained 1280-d) map

    def build_heads(self, cfg, data, backbone) -> dict:
        from ...registry import HEADS
        from ...training.losses import build_loss

        labels = data["labels"] if data else cfg.data.labels
        if not labels:
            raise UserError("the run's config has no labels", where="data.labels")
        if data:
            cfg.data.labels = labels  # saved in config.yaml, so a loaded run knows its classes
        counts = [sum(1 for _, y in data["train"] if y == i) for i in range(len(labels))] if data else None
        return {name: HEADS.get(spec.type)(backbone, spec.options, num_labels=len(labels), loss_fn=build_loss(spec.loss or cfg.loss, counts))
                for name, spec in cfg.model.heads.items()}

    def prepare(self, cfg, processor, data) -> Prepared:
        from ...training.batching import stack_collate

        splits = {s: Images(data[s], transforms(s == "train", cfg.data.image_size, cfg.data.augment)) for s in SPLITS}
        return Prepared(splits, stack_collate, {s: [1] * len(splits[s]) for s in SPLITS}, deterministic_train=not cfg.data.augment)

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ...metrics import compute
        from ...training.batching import iterate_eval

        head = single_head(cfg)
        model.eval()
        probs, order = [], []
        for batch, idx in iterate_eval(prepared, split, cfg.train.eval_batch_size, next(model.parameters()).device):
            probs.append(model(pixel_values=batch["pixel_values"], heads=[head])["heads"][head]["logits"].float().softmax(-1).cpu())
            order += idx
        probs = torch.cat(probs)[torch.argsort(torch.tensor(order))]
        refs = [y for _, y in prepared.splits[split].rows]
        preds = probs.argmax(-1).tolist()
        return EvalOutput(compute(self.head_metrics(cfg, head), predictions=preds, references=refs), preds, refs, {"probs": probs})

    @torch.no_grad()
    def predict(self, cfg, model, processor, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        from ...vision.dataset import read_rgb
        from ...vision.samples import probe_image

        head = single_head(cfg)
        model.eval()
        for path in inputs:
            probe_image(path)
        transform = transforms(False, cfg.data.image_size, False)
        images = torch.stack([transform(read_rgb(p)) for p in inputs]).to(next(model.parameters()).device)
        probs = model(pixel_values=images, heads=[head])["heads"][head]["logits"].float().softmax(-1).cpu()
        labels = cfg.data.labels
        return [{"input": p, "label": labels[int(q.argmax())], "score": round(float(q.max()), 4),
                 "scores": {n: round(float(v), 4) for n, v in zip(labels, q)}} for p, q in zip(inputs, probs)]

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ...reporting.sections import classification_sections

        return classification_sections(test, data["labels"], run_dir)

    qc_view = staticmethod(qc.view)
    write_fixed = staticmethod(qc.write_fixed)
