"""``image_multilabel``: the COCO object categories present in an image, from the image, its caption,
or both (``data.inputs``), with a classification head under a binary cross-entropy loss.

``image``: the image backbone is the model's backbone; ``text``: the text backbone alone reads the
caption; ``image+text``: the text backbone reads the caption, the ``image`` tower the image, and a
fusion module joins them (the head pools ``joint``).  Training pairs each image with each of its
captions; evaluation takes one caption per image (``data.eval_caption``).  Metrics: mAP over the
classes present, micro-F1 at 0.5.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import UserError
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from .batching import Collate, ImageStore, Items, lengths
from .data import SPLITS, ImageTextData, load_splits


def _items(rows, inputs: str, train: bool, eval_caption: int) -> list[dict]:
    out = []
    for row in rows:
        captions = row.captions if train else [row.captions[min(eval_caption, len(row.captions) - 1)]]
        if inputs == "image":
            captions = captions[:1]
        for caption in captions:
            item = {"labels": row.labels, "row": row}
            if inputs != "text":
                item["image"] = row
            if inputs != "image":
                item["text"] = caption
            out.append(item)
    return out


@register_kind
class ImageMultilabel(TaskKind):
    name = "image_multilabel"
    DataSpec = ImageTextData
    metric_inputs = "multilabel"
    backbone_family = "text"
    tower_families = {"image": "image"}
    head_types = ("classification",)

    def backbone_family_for(self, cfg) -> str:
        return "image" if cfg.data.inputs == "image" else "text"

    def load_data(self, cfg):
        wants_tower = cfg.data.inputs == "image+text"
        if wants_tower != ("image" in cfg.model.towers):
            raise UserError(f"data.inputs '{cfg.data.inputs}' " + ("needs an image tower" if wants_tower else "takes no tower"),
                            where="model.towers", expected="{image: mobilenet-v2}" if wants_tower else "none")
        if any(cfg.data.splits[s].instances is None for s in cfg.data.splits):
            raise UserError("multi-label tasks need each split's instances JSON", where="data.splits.*.instances")
        return load_splits(cfg.data)

    def data_summary(self, data) -> dict:
        return {s: len(data[s]) for s in SPLITS}

    def build_heads(self, cfg, data, backbone, towers=None) -> dict:
        from ...registry import HEADS
        from ...training.losses import build_loss

        names = data["class_names"] if data is not None else cfg.data.class_names
        if data is not None:
            cfg.data.class_names = list(names)  # saved in config.yaml: a loaded run knows its classes
        heads = {}
        for name, spec in cfg.model.heads.items():
            loss = spec.loss or cfg.loss
            if loss.name != "binary_cross_entropy":
                raise UserError(f"a multi-label head trains with binary_cross_entropy, not '{loss.name}'", where="loss.name",
                                expected="binary_cross_entropy")
            if (spec.options.pooling == "joint") != (cfg.data.inputs == "image+text"):
                raise UserError(f"data.inputs '{cfg.data.inputs}' and pooling '{spec.options.pooling}' do not go together",
                                where=f"model.heads.{name}.options.pooling", expected="joint exactly when data.inputs is image+text")
            heads[name] = HEADS.get(spec.type)(backbone, spec.options, num_labels=len(names), loss_fn=build_loss(loss))
        return heads

    def prepare(self, cfg, tokenizer, data) -> Prepared:
        collate = Collate(tokenizer, cfg.model.max_length, ImageStore(cfg.data.image_size), len(data["class_names"]))
        splits = {s: Items(_items(data[s], cfg.data.inputs, s == "train", cfg.data.eval_caption)) for s in SPLITS}
        return Prepared(splits, collate, {s: lengths(splits[s].items, tokenizer) for s in SPLITS}, deterministic_train=True,
                        extra={"rows": {s: [it["row"] for it in splits[s].items] for s in SPLITS}})

    @torch.no_grad()
    def _probs(self, cfg, model, collate, items: list[dict]) -> torch.Tensor:
        head = single_head(cfg)
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(items), cfg.train.eval_batch_size):
            batch = collate(items[start:start + cfg.train.eval_batch_size])
            batch.pop("labels", None)
            logits = model(**{k: v.to(device) for k, v in batch.items()}, heads=[head])["heads"][head]["logits"]
            out.append(logits.float().sigmoid().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        """Batches from ``prepared`` (raw items, or the cached pooled features of a frozen model)."""
        from ...metrics import compute
        from ...training.batching import iterate_eval

        head = single_head(cfg)
        model.eval()
        n = len(prepared.splits[split])
        probs, truth = [None] * n, [None] * n
        for batch, idx in iterate_eval(prepared, split, cfg.train.eval_batch_size, next(model.parameters()).device):
            labels = batch.pop("labels")
            out = model(**batch, heads=[head])["heads"][head]["logits"].float().sigmoid().cpu()
            for row, i in enumerate(idx):
                probs[i], truth[i] = out[row].tolist(), [int(v) for v in labels[row].tolist()]
        metrics = compute(self.head_metrics(cfg, head), predictions=probs, references=truth)
        return EvalOutput(metrics, probs, truth, {"rows": prepared.extra["rows"][split]})

    def predict(self, cfg, model, tokenizer, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        """Image paths (``image``), captions (``text``), or JSON ``{"image": path, "caption": text}``."""
        from ...vision.samples import IMAGE_EXTENSIONS, probe_image
        from .data import ImageRow

        items = []
        for k, text in enumerate(inputs):
            where = f"input {k + 1}"
            if text.lstrip().startswith("{"):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise UserError(f"input looks like JSON but is not valid ({exc.msg})", where=where) from None
            else:  # a plain input is an image path (by its extension) or a caption
                obj = {"image" if Path(text).suffix.lower() in IMAGE_EXTENSIONS else "caption": text}
            if not isinstance(obj, dict):
                raise UserError("JSON input must be an object", where=where)
            item = {}
            if cfg.data.inputs != "text":
                if not obj.get("image"):
                    raise UserError("this task needs an image", where=where, expected='a path, or {"image": path, "caption": text}')
                probe_image(obj["image"])
                item["image"] = ImageRow(-(k + 1), Path(obj["image"]), [obj.get("caption", "")])
            if cfg.data.inputs != "image":
                if not str(obj.get("caption", "")).strip():
                    raise UserError("this task needs a caption", where=where, expected='{"image": path, "caption": text}')
                item["text"] = obj["caption"]
            items.append(item)
        model.eval()
        probs = self._probs(cfg, model, Collate(tokenizer, cfg.model.max_length, ImageStore(cfg.data.image_size)), items)
        names = cfg.data.class_names
        return [{"input": text, "labels": [names[i] for i in torch.nonzero(p >= 0.5).flatten().tolist()],
                 "scores": {names[i]: round(float(p[i]), 4) for i in p.topk(min(5, len(names))).indices.tolist()}}
                for text, p in zip(inputs, probs)]

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from .report import multilabel_grid

        multilabel_grid(test, cfg.data.class_names, run_dir / "multilabel_grid.png")
        m = test.metrics
        return ["## Multi-label (test)\n", f"mAP over the classes present {m.get('multilabel_map', 0):.3f}, micro-F1 {m.get('micro_f1', 0):.3f} "
                f"(inputs: {cfg.data.inputs}).\n", "Test images with their true (green) and predicted (orange, p >= 0.5) categories:\n\n"
                "![multi-label](multilabel_grid.png)\n"]
