"""Text classification (sentiment, topic, intent): classification heads on pooled text-backbone states."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.cache import fingerprint, tokenized
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from . import knowledge as kn
from . import qc
from .data import KIND, TextClassificationData, load_splits


@register_kind
class TextClassification(TaskKind):
    name = KIND
    pads_to_multiple = True
    DataSpec = TextClassificationData
    backbone_family = "text"
    head_types = ("classification",)
    knowledge_inputs = ("retrieved_segments", "entity_links")  # see .knowledge

    def load_data(self, cfg):
        return load_splits(cfg)

    def knowledge_rows(self, cfg, data) -> dict:
        """{split: [{text, source, label}]}: what a KB derived from the task reads (``mmsft kb --task``)."""
        return kn.rows_view(cfg, data)

    def data_summary(self, data) -> dict:
        return {name: len(ds) for name, ds in data.items()}

    def adapt_backbone(self, cfg, backbone, processor) -> None:
        kn.add_knowledge_token(cfg, backbone, processor)

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
        know = kn.task_knowledge(cfg, data)
        views = kn.rows_view(cfg, data) if know else {}

        def tok(batch):
            texts = [k + t for k, t in zip(batch["_knowledge"], batch["text"])] if know else batch["text"]
            enc = tokenizer(texts, truncation=True, max_length=max_len)
            enc["labels"] = batch["label"]
            if know:
                enc[kn.LINKS] = batch["_links"]
            return enc

        key = fingerprint(cfg.name, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_len, data["train"]._fingerprint,
                          know.signature() if know else None)
        splits, lengths = {}, {}
        for name, ds in data.items():
            if know:
                extra = kn.columns(cfg, know, tokenizer, views[name])
                ds = ds.add_column("_knowledge", extra["prefix"]).add_column("_links", extra["links"])
            enc = tokenized(ds, tok, f"{cfg.name}-{key}", name).remove_columns([c for c in ds.column_names])
            enc.set_format("torch")
            splits[name] = enc
            lengths[name] = [len(x) for x in enc.with_format(None)["input_ids"]]
        multiple = cfg.train.pad_to_multiple_of
        pad = DataCollatorWithPadding(tokenizer, return_tensors="pt", pad_to_multiple_of=multiple if multiple > 1 else None)
        if know:
            pad = kn.KnowledgeCollate(pad, know, "entity_links" in kn.active_inputs(cfg))
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
        know, texts, extra, batch = None, list(inputs), {}, {}
        if cfg.knowledge:  # the KB as at training (a KB derived from the task needs its rows)
            know = kn.task_knowledge(cfg, self.load_data(cfg))
            extra = kn.columns(cfg, know, tokenizer, [{"text": t, "source": f"input {i + 1}"} for i, t in enumerate(inputs)], cache=False)
            texts = [k + t for k, t in zip(extra["prefix"], inputs)]
            if "entity_links" in kn.active_inputs(cfg):
                batch = kn.entity_batch(extra["links"], know.entity_vectors)
        batch.update(tokenizer(texts, truncation=True, max_length=cfg.model.max_length, padding=True, return_tensors="pt"))
        device = next(model.parameters()).device
        probs = model(**{k: v.to(device) for k, v in batch.items()}, heads=[head])["heads"][head]["logits"].float().softmax(-1).cpu()
        out = []
        for i, (text, p) in enumerate(zip(inputs, probs)):
            top = int(p.argmax())
            row = {"input": text, "label": cfg.data.labels[top], "score": round(float(p[top]), 4),
                   "scores": {name: round(float(v), 4) for name, v in zip(cfg.data.labels, p)}}
            if know:
                if "retrieved_segments" in kn.active_inputs(cfg):
                    row["knowledge"] = know.shown(extra["hits"][i])
                if extra["links"][i]:
                    row["linked"] = [know.kb.entries[j].id for j in extra["links"][i]]
            out.append(row)
        return out

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ...reporting.sections import classification_sections

        from ...knowledge.inject import report_lines

        return classification_sections(test, cfg.data.labels, run_dir) + report_lines(cfg)

    qc_view = staticmethod(qc.view)
    write_fixed = staticmethod(qc.write_fixed)
    write_augmented = staticmethod(qc.write_augmented)

