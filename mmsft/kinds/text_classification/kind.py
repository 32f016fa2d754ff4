"""Text classification (sentiment, topic, intent): classification heads on pooled text-backbone states."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.cache import fingerprint, tokenized
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from . import qc
from .data import KIND, TextClassificationData, load_splits


@register_kind
class TextClassification(TaskKind):
    name = KIND
    DataSpec = TextClassificationData
    backbone_family = "text"
    head_types = ("classification",)

    def load_data(self, cfg):
        return load_splits(cfg)

    def data_summary(self, data) -> dict:
        return {name: len(ds) for name, ds in data.items()}

    def build_heads(self, cfg, data, backbone) -> dict:
        from ...registry import HEADS
        from ...training.losses import build_loss

        counts = np.bincount(np.asarray(data["train"]["label"]), minlength=len(cfg.data.labels)).tolist() if data else None
        return {name: HEADS.get(spec.type)(backbone, spec.options, num_labels=len(cfg.data.labels),
                                            loss_fn=build_loss(spec.loss or cfg.loss, counts))
                for name, spec in cfg.model.heads.items()}

    def prepare(self, cfg, tokenizer, data) -> Prepared:
        from transformers import DataCollatorWithPadding

        max_len = cfg.model.max_length

        def tok(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_len)
            enc["labels"] = batch["label"]
            return enc

        key = fingerprint(cfg.name, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_len, data["train"]._fingerprint)
        splits, lengths = {}, {}
        for name, ds in data.items():
            enc = tokenized(ds, tok, f"{cfg.name}-{key}", name).remove_columns([c for c in ds.column_names])
            enc.set_format("torch")
            splits[name] = enc
            lengths[name] = [len(x) for x in enc.with_format(None)["input_ids"]]
        pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        groups = {"class": list(data["train"]["label"])}  # for train.sampler: class_balanced
        if cfg.train.sampler == "cluster_balanced":
            from ...dataqc.diversity import text_clusters

            groups["cluster"] = text_clusters(list(data["train"]["text"]), max_len)
        return Prepared(splits, pad, lengths, groups)

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ...metrics import compute
        from ...training.batching import iterate_eval

        head = single_head(cfg)
        model.eval()
        logits, refs = [], []
        for batch, _ in iterate_eval(prepared, split, cfg.train.eval_batch_size, next(model.parameters()).device):
            out = model(**{k: v for k, v in batch.items() if k != "labels"}, heads=[head])
            logits.append(out["heads"][head]["logits"].float().cpu())
            refs.append(batch["labels"].cpu())
        probs = torch.cat(logits).softmax(-1)
        preds, refs_ = probs.argmax(-1).tolist(), torch.cat(refs).tolist()
        metrics = compute(self.head_metrics(cfg, head), predictions=preds, references=refs_)
        return EvalOutput(metrics, preds, refs_, {"probs": probs})

    @torch.no_grad()
    def predict(self, cfg, model, tokenizer, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        head = single_head(cfg)
        model.eval()
        enc = tokenizer(inputs, truncation=True, max_length=cfg.model.max_length, padding=True, return_tensors="pt")
        device = next(model.parameters()).device
        probs = model(**{k: v.to(device) for k, v in enc.items()}, heads=[head])["heads"][head]["logits"].float().softmax(-1).cpu()
        out = []
        for text, p in zip(inputs, probs):
            top = int(p.argmax())
            out.append({"input": text, "label": cfg.data.labels[top], "score": round(float(p[top]), 4),
                        "scores": {name: round(float(v), 4) for name, v in zip(cfg.data.labels, p)}})
        return out

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ...reporting.sections import classification_sections

        return classification_sections(test, cfg.data.labels, run_dir)

    qc_view = staticmethod(qc.view)
    write_fixed = staticmethod(qc.write_fixed)
    write_augmented = staticmethod(qc.write_augmented)
