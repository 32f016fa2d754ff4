"""The classification cells of ``benchmarks/knowledge.py``: one (task, module, fraction) built once,
its frozen features cached, then one head per seed trained with the runner and scored on test.

Why the features can be shared between seeds: the ``frozen`` adapter keeps the backbone (and a
frozen knowledge adapter, pre-trained with its own seed) fixed, so what the backbone computes does
not depend on the run's seed -- only the head's (and entity memory's) initial weights and the batch
order do.  ``retrieved_segments`` and ``knowledge_adapter`` cache pooled features exactly as
``mmsft train --adapter frozen`` does (``cache_features``).  ``entity_memory`` trains on the token
states of the last block, cached here (``TokenStates``): it sits after that block, so this is the
computation ``ComposedModel`` does, minus re-running the frozen blocks every step (checked in
``--quick``: ``max_abs_diff``).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from mmsft.adapters import apply_adapters
from mmsft.kinds.text_classification.knowledge import LINKS, entity_batch
from mmsft.models import Features
from mmsft.models.composed import ComposedModel
from mmsft.models.modules import ModuleContext
from mmsft.pipeline import set_seed
from mmsft.registry import KINDS
from mmsft.training.batching import cache_features, iterate_eval
from mmsft.training.runner import Runner

QUICK_ROWS = {"train": 60, "validation": 30, "test": 30}


@dataclass
class Cell:
    cfg: object
    data: object
    features: object  # a Prepared whose splits hold cached features (pooled, or token states)
    costs: dict = field(default_factory=dict)
    check: float | None = None  # entity_memory: max |logit difference| cached tokens vs the composed model


def sliced(cfg, fraction: float, quick: bool):
    """The task's splits as training loads them; train cut to its first ``fraction`` (data.max_train_samples)."""
    from datasets import DatasetDict

    data = KINDS.get(cfg.kind).load_data(cfg)
    limits = dict(QUICK_ROWS) if quick else {}
    limits["train"] = round(fraction * min(len(data["train"]), limits.get("train", len(data["train"]))))
    return DatasetDict({k: v.select(range(min(len(v), limits[k]))) if k in limits else v for k, v in data.items()})


def build(cfg, data, seed: int):
    from mmsft.models import build_model

    cfg = replace(cfg, train=replace(cfg.train, seed=seed))
    set_seed(seed)
    model, tokenizer = build_model(cfg, KINDS.get(cfg.kind), data)
    set_seed(seed)
    apply_adapters(model, cfg.adapters)
    return cfg, model, tokenizer


def step_ms(model, prepared, batches: int = 3, size: int = 16) -> float:
    """Forward + backward of the whole composed model on train batches (what a step costs uncached)."""
    dataset = prepared.splits["train"]
    model.train()
    times = []
    for b in range(batches + 1):
        items = [dataset[(b * size + i) % len(dataset)] for i in range(size)]
        batch = prepared.collate(items)
        tick = time.perf_counter()
        out = model(**batch)
        out["loss"].backward()
        times.append(time.perf_counter() - tick)
        model.zero_grad(set_to_none=True)
    model.eval()
    return round(1000 * sum(times[1:]) / batches, 1)


# -- entity_memory on cached token states ---------------------------------------------------------------
class TokenStates(torch.utils.data.Dataset):
    def __init__(self, tokens: list[torch.Tensor], items: list[dict]):
        self.tokens, self.items = tokens, items

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": self.tokens[i], **self.items[i]}


class TokenCollate:
    def __init__(self, vectors: torch.Tensor):
        self.vectors = vectors

    def __call__(self, items: list[dict]) -> dict:
        width = max(len(it["tokens"]) for it in items)
        tokens = torch.zeros(len(items), width, items[0]["tokens"].shape[1])
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for row, it in enumerate(items):
            tokens[row, : len(it["tokens"])] = it["tokens"].float()
            mask[row, : len(it["tokens"])] = 1
        return {"tokens": tokens, "attention_mask": mask, "labels": torch.stack([it["labels"] for it in items]),
                **entity_batch([it[LINKS] for it in items], self.vectors)}


class CachedTokensModel(nn.Module):
    """``entity_memory`` and the heads of a composed model, on the cached output of its last block."""

    trainable_state_dict = ComposedModel.trainable_state_dict

    def __init__(self, model: ComposedModel):
        super().__init__()
        self.inserts, self.heads = model.inserts, model.heads
        self.point = model.inserts["entity_memory"].points()[0]

    def forward(self, tokens, attention_mask, knowledge_entities, knowledge_entity_mask, labels=None, heads=None):
        context = ModuleContext({"knowledge_entities": knowledge_entities, "knowledge_entity_mask": knowledge_entity_mask})
        features = Features(tokens=self.inserts["entity_memory"].transform(self.point, tokens, context), attention_mask=attention_mask)
        batch = {"labels": labels}
        outputs, losses = {}, []
        for name in heads or list(self.heads):
            head = self.heads[name]
            outputs[name] = out = head(head.pool(features, batch), batch)
            loss = head.loss(out, batch)
            if loss is not None:
                losses.append(loss)
        return {"heads": outputs, **({"loss": sum(losses)} if losses else {})}


@torch.no_grad()
def token_features(plain: ComposedModel, prepared, batch_size: int):
    """Per split: the last block's output of the frozen backbone (fp16, unpadded) and the links."""
    from mmsft.training.data import Prepared

    splits = {}
    for split, dataset in prepared.splits.items():
        tokens, items = [None] * len(dataset), [None] * len(dataset)
        for batch, idx in iterate_eval(prepared, split, batch_size, "cpu"):
            states = plain.features(batch).tokens
            for j, i in enumerate(idx):
                n = int(batch["attention_mask"][j].sum())
                tokens[i] = states[j, :n].half()
                row = dataset[i]
                items[i] = {"labels": row["labels"], LINKS: [int(v) for v in row[LINKS]]}
        splits[split] = TokenStates(tokens, items)
    return Prepared(splits, TokenCollate(prepared.collate.vectors), prepared.lengths, prepared.groups)


def cell(task_cfg, arm: str, fraction: float, quick: bool) -> Cell:
    """Build the model once, run retrieval (prepare) and cache the frozen features of every split."""
    kind = KINDS.get(task_cfg.kind)
    tick = time.perf_counter()
    data = sliced(task_cfg, fraction, quick)
    cfg, model, tokenizer = build(task_cfg, data, 0)
    costs = {"build_s": round(time.perf_counter() - tick, 1)}
    adapter = model.inserts["knowledge_adapter"] if "knowledge_adapter" in model.inserts else None
    if adapter is not None:
        costs["pretraining"] = adapter.pretraining
    tick = time.perf_counter()
    prepared = kind.prepare(cfg, tokenizer, data)
    costs["prepare_s"] = round(time.perf_counter() - tick, 1)  # retrieval and linking of every row included
    costs["step_ms"] = step_ms(model, prepared)
    tick = time.perf_counter()
    check = None
    if arm == "entity_memory":
        _, plain, _ = build(replace(cfg, model=replace(cfg.model, modules=[])), data, 0)
        features = token_features(plain, prepared, cfg.train.eval_batch_size)
        batch, idx = next(iterate_eval(prepared, "test", 8, "cpu"))
        cached = features.collate([features.splits["test"][i] for i in idx])
        with torch.no_grad():
            want = model(**batch)["heads"]
            got = CachedTokensModel(model)(**cached)["heads"]
        check = max(float((want[n]["logits"] - got[n]["logits"]).abs().max()) for n in want)
    else:
        features = cache_features(model, prepared, cfg.train.eval_batch_size, "cpu")
    costs["encode_s"] = round(time.perf_counter() - tick, 1)
    return Cell(cfg, data, features, costs, check)


def train_seed(c: Cell, arm: str, seed: int) -> dict:
    kind = KINDS.get(c.cfg.kind)
    cfg, model, _ = build(c.cfg, c.data, seed)
    if arm == "entity_memory":
        model = CachedTokensModel(model)
    prepared = c.features
    with tempfile.TemporaryDirectory() as run_dir:
        runner = Runner(cfg.train, model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
                        lambda m: kind.evaluate(cfg, m, prepared, "validation").metrics, Path(run_dir))
        tick = time.perf_counter()
        result = runner.fit()
        seconds = time.perf_counter() - tick
        test = kind.evaluate(cfg, runner.accelerator.unwrap_model(runner.model), prepared, "test").metrics
    return {"seed": seed, "accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "best_step": result.state.best_step,
            "epochs": result.state.epoch, "train_seconds": round(seconds, 1), "train_rows": len(c.data["train"])}
