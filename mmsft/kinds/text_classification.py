"""Text classification (sentiment, topic, intent): a pooled text backbone plus a linear head."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..data.cache import cached_splits, fingerprint, tokenized
from ..data.readers import READERS, expand
from ..data.splits import DedupePolicy, SplitSpec, dedupe, split_rows
from ..errors import UserError, suggest
from .base import EvalOutput, Prepared, TaskKind, register_kind, resolve_data_path

SPLITS = ("all", "train", "validation", "test")


@dataclass
class TextClassificationData:
    format: str  # a reader in mmsft.data.readers.READERS: csv, tsv, jsonl, phrasebank, review_xml
    files: dict[str, Union[str, list[str]]]  # split (all|train|validation|test) -> path(s) under the data root
    labels: list[str]  # label names in id order
    text_column: Union[str, list[str]] = "text"  # several names: the first one present is used
    label_column: str = "label"
    label_map: dict[str, str] = field(default_factory=dict)  # raw label value -> label name
    encoding: str = "utf-8"
    split: SplitSpec = field(default_factory=SplitSpec)
    dedupe: DedupePolicy = "exact"
    max_train_samples: Optional[int] = None
    root: Optional[str] = None  # data root for this task; default: MMSFT_DATA_ROOT or ../shared/data
    augment: list[Any] = field(default_factory=list)  # [{method, factor, seed, ...options}]: see mmsft.augment

    def validate(self, path: str) -> None:
        if self.format not in READERS:
            raise UserError(f"unknown data format '{self.format}'.{suggest(self.format, READERS.names())}",
                            where=f"{path}.format", expected="one of: " + ", ".join(READERS.names()))
        for key in self.files:
            if key not in SPLITS:
                raise UserError(f"unknown split '{key}'.{suggest(key, SPLITS)}", where=f"{path}.files.{key}", expected=", ".join(SPLITS))
        if "all" not in self.files and not ("train" in self.files and "test" in self.files):
            raise UserError("need files.all, or files.train and files.test", where=f"{path}.files")
        if len(set(self.labels)) != len(self.labels) or not self.labels:
            raise UserError("labels must be a non-empty list of distinct names", where=f"{path}.labels")
        from ..augment import parse_entries

        parse_entries(self.augment, TextClassification.name, f"{path}.augment")


def _read_split(spec: TextClassificationData, patterns) -> list[dict]:
    root = resolve_data_path(spec, "")
    label_ids = {name: i for i, name in enumerate(spec.labels)}
    rows = []
    for path in expand(root, patterns):
        for row in READERS.get(spec.format)(path, encoding=spec.encoding, text_column=spec.text_column, label_column=spec.label_column):
            name = spec.label_map.get(row["label"], row["label"])
            if name not in label_ids:
                raise UserError(f"label '{row['label']}' is not in the label list.{suggest(name, spec.labels)}",
                                where=f"{path}:{row['source'].rsplit(':', 1)[-1]}", expected="one of: " + ", ".join(spec.labels))
            if not row["text"].strip():
                raise UserError("empty text", where=f"{path}:{row['source'].rsplit(':', 1)[-1]}")
            rows.append({"text": row["text"], "label": name, "source": row["source"]})
    return rows


def build_splits(spec: TextClassificationData) -> tuple[dict[str, list[dict]], dict]:
    """Read every file, dedupe (before splitting, so duplicates cannot leak across splits), split."""
    stats: dict = {}
    if "all" in spec.files:
        rows, stats = dedupe(_read_split(spec, spec.files["all"]), spec.dedupe)
        fractions = {"train": spec.split.train, "validation": spec.split.validation, "test": spec.split.test}
        splits = split_rows(rows, fractions, spec.split.seed, spec.split.stratify)
    else:
        splits = {name: _read_split(spec, spec.files[name]) for name in ("train", "validation", "test") if name in spec.files}
        splits["train"], stats = dedupe(splits["train"], spec.dedupe)
        if "validation" not in splits:
            share = spec.split.validation / max(spec.split.train + spec.split.validation, 1e-9)
            carved = split_rows(splits["train"], {"train": 1 - share, "validation": share}, spec.split.seed, spec.split.stratify)
            splits.update(carved)
    for name in ("train", "validation", "test"):
        if not splits.get(name):
            raise UserError(f"split '{name}' is empty after cleaning and splitting", where="data.files")
    if spec.max_train_samples:
        splits["train"] = splits["train"][: spec.max_train_samples]
    if spec.augment:  # after splitting and subsetting: new rows come from train only, never leak
        from ..augment import augment_rows, parse_entries

        held_out = [r["text"] for name in ("validation", "test") for r in splits[name]]
        new, stats["augment"] = augment_rows(splits["train"], parse_entries(spec.augment, TextClassification.name, "data.augment"),
                                             seed=spec.split.seed, forbidden=held_out)
        splits["train"] = splits["train"] + new
    label_ids = {n: i for i, n in enumerate(spec.labels)}
    for rows in splits.values():
        for row in rows:
            row["label"] = label_ids[row["label"]]
    return splits, stats


@register_kind
class TextClassification(TaskKind):
    name = "text_classification"
    DataSpec = TextClassificationData
    metric_names = ("accuracy", "f1_macro", "precision_macro", "recall_macro")

    def load_data(self, cfg):
        spec = cfg.data
        files = [spec.files[k] for k in sorted(spec.files)]
        root = resolve_data_path(spec, "")
        paths_ = [p for f in files for p in expand(root, f)]
        from ..config import to_dict

        key = f"{cfg.name}-{fingerprint(to_dict(spec), paths_)}"
        return cached_splits(key, lambda: build_splits(spec)[0])

    def build_model(self, cfg, data):
        from ..models.text import TextClassifier, default_pooling, load_text_backbone
        from ..training.losses import build_loss

        backbone, tokenizer, entry = load_text_backbone(cfg.model.backbone)
        pooling = cfg.model.pooling if cfg.model.pooling != "auto" else default_pooling(backbone, entry)
        counts = np.bincount(np.asarray(data["train"]["label"]), minlength=len(cfg.data.labels)).tolist() if data else None
        model = TextClassifier(backbone, pooling, len(cfg.data.labels), cfg.model.dropout, cfg.model.head_hidden,
                               loss_fn=build_loss(cfg.loss, counts), head=cfg.model.head)
        model.zoo_entry = entry
        return model, tokenizer

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
            from ..dataqc.diversity import text_clusters

            groups["cluster"] = text_clusters(list(data["train"]["text"]), max_len)
        return Prepared(splits, pad, lengths, groups)

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ..metrics import compute
        from ..training.batching import iterate_eval

        model.eval()
        logits, refs = [], []
        for batch, _ in iterate_eval(prepared, split, cfg.train.eval_batch_size, next(model.parameters()).device):
            out = model(**{k: v for k, v in batch.items() if k != "labels"})
            logits.append(out["logits"].float().cpu())
            refs.append(batch["labels"].cpu())
        probs = torch.cat(logits).softmax(-1)
        preds, refs_ = probs.argmax(-1).tolist(), torch.cat(refs).tolist()
        metrics = compute(cfg.metrics, predictions=preds, references=refs_)
        return EvalOutput(metrics, preds, refs_, {"probs": probs})

    def predict(self, cfg, model, tokenizer, inputs: list[str]) -> list[dict]:
        model.eval()
        enc = tokenizer(inputs, truncation=True, max_length=cfg.model.max_length, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = model(**enc)["logits"].float().softmax(-1)
        out = []
        for text, p in zip(inputs, probs):
            top = int(p.argmax())
            out.append({"input": text, "label": cfg.data.labels[top], "score": round(float(p[top]), 4),
                        "scores": {name: round(float(v), 4) for name, v in zip(cfg.data.labels, p)}})
        return out

    def data_summary(self, data) -> dict:
        return {name: len(ds) for name, ds in data.items()}

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from ..reporting.plots import confusion_matrix_png

        confusion_matrix_png(test.references, test.predictions, cfg.data.labels, run_dir / "confusion_matrix.png")
        from sklearn.metrics import classification_report

        text = classification_report(test.references, test.predictions, labels=list(range(len(cfg.data.labels))),
                                     target_names=cfg.data.labels, digits=3, zero_division=0)
        return ["## Confusion matrix (test)\n\n![confusion matrix](confusion_matrix.png)\n",
                "## Per-class scores (test)\n\n```\n" + text + "```\n"]
