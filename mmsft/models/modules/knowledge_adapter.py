"""``knowledge_adapter`` (K-Adapter, Wang et al. 2021): bottleneck adapters first trained on a KB alone,
then frozen and fused residually into the task model's hidden states at chosen blocks.

Pre-training, with the backbone frozen: the adapters sit after ``layers``, a linear probe on the
mean-pooled final states learns the KB objective (``mmsft.knowledge.objectives``: ICD-10
description -> chapter, Loughran-McDonald word -> sentiment flags, ...), and the probe is thrown
away.  The result is cached per (KB content, backbone, options) under the cache folder, so a second
run -- or loading a saved run, whose ``modules.safetensors`` holds the weights anyway -- costs
nothing.  With ``trainable: false`` (the default) nothing of the module trains with the task, so a
frozen backbone's features stay cacheable; ``trainable: true`` fine-tunes the adapters too.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from ...errors import UserError
from ...registry import MODULES
from .bottleneck import BottleneckAdapter, BottleneckOptions

WHERE = "model.modules[knowledge_adapter].options"


@dataclass
class KnowledgeAdapterOptions(BottleneckOptions):
    kb: str = ""  # a KB that stands alone: icd10, loughran_mcdonald, banking77_intents, or a .jsonl / .csv / folder path
    objective: str = "field"  # see mmsft.knowledge.objectives.KB_OBJECTIVES: field, flags
    targets: list[str] = field(default_factory=lambda: ["chapter"])  # the field (field) or boolean fields (flags) to predict
    input: Literal["text", "id", "title", "passage"] = "text"  # what of an entry the adapter reads
    layers: list[int] = field(default_factory=lambda: [-3, -1])
    steps: int = 400  # pre-training optimizer steps
    batch_size: int = 32
    lr: float = 1e-3
    max_length: int = 32  # tokens of an entry
    max_entries: int = 20000  # entries sampled for pre-training (objective field: balanced over classes)
    seed: int = 0  # pre-training seed (the cached weights do not depend on the run's seed)
    trainable: bool = False  # K-Adapter: frozen after pre-training

    def validate(self, path: str) -> None:
        super().validate(path)
        from ...knowledge.objectives import KB_OBJECTIVES

        if not self.kb:
            raise UserError("a knowledge adapter needs the KB it pre-trains on", where=f"{path}.kb", expected="icd10, loughran_mcdonald, ... or a path")
        from ...knowledge.named import NAMED_KBS

        if self.kb in NAMED_KBS and not NAMED_KBS.get(self.kb).standalone:
            raise UserError(f"KB '{self.kb}' is built from a task's rows; a knowledge adapter pre-trains on a KB that stands alone",
                            where=f"{path}.kb", expected="icd10, loughran_mcdonald, banking77_intents, or a file")
        if self.objective not in KB_OBJECTIVES:
            raise UserError(f"unknown knowledge-adapter objective '{self.objective}'", where=f"{path}.objective",
                            expected="one of: " + ", ".join(KB_OBJECTIVES.names()))
        for name in ("steps", "batch_size", "max_length", "max_entries"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1", where=f"{path}.{name}")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}", where=f"{path}.lr")


def _sample(task, limit: int, seed: int) -> list[int]:
    """At most ``limit`` entries; for class targets an equal share per class (small classes whole)."""
    generator = torch.Generator().manual_seed(seed)
    if task.loss != "ce":
        order = torch.randperm(len(task.texts), generator=generator).tolist()
        return order[:limit]
    picked = []
    share = max(1, limit // task.outputs)
    for c in range(task.outputs):
        members = (task.targets == c).nonzero().flatten()
        picked += members[torch.randperm(len(members), generator=generator)[:share]].tolist()
    return [picked[i] for i in torch.randperm(len(picked), generator=generator).tolist()]


def _hold_out(task, picked: list[int]) -> tuple[list[int], list[int]]:
    """(train, held-out) entries: 5% (at most 2,000) held out; for classes, only from classes with two
    or more entries, so every held-out class was seen.  Nothing to hold out: scored on the training entries."""
    n = max(1, min(len(picked) // 20, 2000))
    held: set[int] = set()
    if task.loss == "ce":
        left = torch.bincount(task.targets[picked], minlength=task.outputs).tolist()
        for i in picked:
            c = int(task.targets[i])
            if len(held) < n and left[c] >= 2:  # keep one entry of every class for training
                held.add(i)
                left[c] -= 1
    elif len(picked) >= 2:
        held = set(picked[:n])
    if not held:
        return picked, picked
    return [i for i in picked if i not in held], [i for i in picked if i in held]


@MODULES.register("knowledge_adapter")
class KnowledgeAdapter(BottleneckAdapter):
    Options = KnowledgeAdapterOptions

    def __init__(self, backbone, options: KnowledgeAdapterOptions):
        if backbone.family != "text":
            raise UserError(f"knowledge_adapter pre-trains on text-encoder backbones, not a {backbone.family} backbone", where=WHERE)
        with torch.random.fork_rng(devices=[]):  # initial weights from the module's own seed: the cache key holds
            torch.manual_seed(options.seed)
            super().__init__(backbone, options)
        self.pretraining = self._pretrained(backbone)

    # -- pre-training on the KB ------------------------------------------------------------------
    def _task(self):
        from ...knowledge.named import load_kb
        from ...knowledge.objectives import INPUTS, KB_OBJECTIVES

        o = self.options
        kb = load_kb(o.kb)
        return kb, KB_OBJECTIVES.get(o.objective)(kb, o.targets, f"{WHERE}.targets", INPUTS[o.input])

    def _pretrained(self, backbone) -> dict:
        from safetensors import safe_open
        from safetensors.torch import load_file

        from ... import paths
        from ...atomic import save_safetensors

        kb, task = self._task()
        settings = {k: v for k, v in asdict(self.options).items() if k != "trainable"}
        key = hashlib.sha256(json.dumps([kb.content_hash, backbone.name, self._points, settings], sort_keys=True).encode()).hexdigest()[:24]
        path = paths.cache_dir() / "knowledge" / "kadapter" / f"{key}.safetensors"
        if path.is_file():
            self.adapters.load_state_dict(load_file(str(path)))
            with safe_open(str(path), "pt") as fh:
                return json.loads(fh.metadata()["report"])
        report = self._train(backbone, task)
        report.update(kb=kb.name, objective=task.describe(self.options.objective, self.options.targets), cache=str(path))
        save_safetensors(path, self.adapters.state_dict(), {"report": json.dumps(report)})
        print(f"[mmsft] knowledge_adapter pre-trained on {kb.name} ({report['objective']}): held-out {report['metric']} "
              f"{report['heldout']:.3f} after {report['steps']} steps, {report['seconds']:.0f} s")
        return report

    def _train(self, backbone, task) -> dict:
        from transformers import AutoTokenizer

        from ...registry import POOLERS
        from ...zoo import resolve

        o = self.options
        tokenizer = AutoTokenizer.from_pretrained(resolve(backbone.name).path)
        pool = POOLERS.get("mean")
        picked = _sample(task, o.max_entries, o.seed)
        train_ids, held_ids = _hold_out(task, picked)
        grads = [p.requires_grad for p in backbone.parameters()]
        backbone.requires_grad_(False)
        was_training = backbone.training
        backbone.eval()
        handles = [backbone.blocks()[i].register_forward_hook(self._hook(i)) for i in self._points]

        def forward(ids):
            enc = tokenizer([task.texts[i] for i in ids], truncation=True, max_length=o.max_length, padding=True, return_tensors="pt")
            features = backbone({k: v for k, v in enc.items() if k in backbone.input_keys})
            return probe(pool(features.tokens, features.attention_mask, None))

        def loss_of(logits, ids):
            target = task.targets[ids]
            return nn.functional.cross_entropy(logits, target) if task.loss == "ce" else nn.functional.binary_cross_entropy_with_logits(logits, target)

        tick = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(o.seed)
                probe = nn.Linear(backbone.width, task.outputs)
                optimizer = torch.optim.AdamW([*self.adapters.parameters(), *probe.parameters()], lr=o.lr, weight_decay=0.0)
                self.adapters.train()
                for step in range(o.steps):
                    ids = [train_ids[(step * o.batch_size + j) % len(train_ids)] for j in range(o.batch_size)]
                    loss = loss_of(forward(ids), ids)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                self.adapters.eval()
                with torch.no_grad():
                    logits = torch.cat([forward(held_ids[s : s + 256]) for s in range(0, len(held_ids), 256)])
            target = task.targets[held_ids]
            score = (logits.argmax(-1) == target).float().mean() if task.loss == "ce" else ((logits > 0).float() == target).all(-1).float().mean()
        finally:
            for handle in handles:
                handle.remove()
            for p, g in zip(backbone.parameters(), grads):
                p.requires_grad_(g)
            backbone.train(was_training)
        metric = "accuracy" if task.loss == "ce" else "exact-match accuracy of the flags"
        if held_ids is train_ids:
            metric += " on the pre-training entries (one entry per class: none held out)"
        return {"steps": o.steps, "entries_used": len(picked), "final_loss": round(loss.item(), 4), "heldout": round(float(score), 4),
                "metric": metric, "heldout_entries": len(held_ids),
                "seconds": round(time.perf_counter() - tick, 1)}

    def _hook(self, index: int):
        def hook(_block, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = self.transform(index, hidden, None)
            return (new, *output[1:]) if isinstance(output, tuple) else new
        return hook
