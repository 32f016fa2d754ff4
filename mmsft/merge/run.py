"""``mmsft merge RUN...``: one merged run folder (or one per task) from runs of one architecture.

Every run is loaded as trained; its backbone becomes plain weights (LoRA / DoRA folded in) unless
the LoRA runs are combined in adapter space by peft (``lora.py``).  Task vectors are taken against
the pretrained base the runs started from (their ``model.backbone``, rebuilt fresh).  Heads have no
base: runs sharing a label set get their heads averaged (with the run weights); runs of different
label sets keep their own heads, and the output holds one run folder per task, each with the same
merged backbone, so each task's accuracy after the merge can be measured (forgetting).  A greedy
soup ranks the runs by their validation metric and adds each one while the soup's validation does
not get worse (Wortsman et al. 2022, recipe 1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..errors import UserError
from . import methods

METHODS = ("average", "greedy_soup", "task_arithmetic", "ties", "dare")


@dataclass
class MergeRequest:
    method: str
    weights: Optional[list[float]] = None
    scale: float = 1.0
    density: float = 0.2
    with_base: float = 0.0
    lora: str = "auto"  # auto | peft | delta
    seed: int = 0
    test: bool = True

    def check(self, n: int) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown merge method '{self.method}'", where="--method", expected="one of: " + ", ".join(METHODS))
        if n < 2 and self.method in ("average", "greedy_soup", "ties"):
            raise UserError(f"{self.method} needs at least two runs, got {n}", where="RUN...")
        if self.weights is not None and len(self.weights) != n:
            raise UserError(f"{len(self.weights)} weights for {n} runs", where="--weights", expected="one weight per run")
        if self.method == "greedy_soup" and self.weights is not None:
            raise UserError("a greedy soup is a uniform average of the ingredients it keeps", where="--weights", expected="no weights")
        if not 0 < self.density <= 1:
            raise UserError(f"density must be in (0, 1], got {self.density}", where="--density")
        if not 0 <= self.with_base <= 1:
            raise UserError(f"--with-base must be in [0, 1], got {self.with_base}", where="--with-base")
        if self.lora not in ("auto", "peft", "delta"):
            raise UserError(f"unknown --lora '{self.lora}'", where="--lora", expected="auto, peft or delta")


@dataclass
class Ingredient:
    run_dir: Path
    session: object
    state: dict = field(default_factory=dict)  # plain backbone weights (delta path)

    @property
    def labels(self) -> tuple:
        return tuple(getattr(self.session.cfg.data, "labels", None) or ())

    @property
    def group(self) -> tuple:
        """Runs of one group share heads: the same task name and label set."""
        return (self.session.cfg.name, self.labels)


def _load(runs) -> list[Ingredient]:
    from ..pipeline import load_run

    out = []
    for run in runs:
        session = load_run(run)
        if len(session.model.inserts):
            raise UserError("runs with modules between backbone and heads are not merged", where=str(run), expected="runs without model.modules")
        out.append(Ingredient(Path(run), session))
    first = out[0].session.cfg
    for item in out[1:]:
        cfg = item.session.cfg
        if (cfg.kind, cfg.model.backbone) != (first.kind, first.model.backbone):
            raise UserError(f"runs of different architectures: {cfg.kind} on {cfg.model.backbone} vs {first.kind} on {first.model.backbone}",
                            where=str(item.run_dir), expected="runs fine-tuned from one backbone")
    return out


def _plain_state(item: Ingredient) -> dict:
    from ..adapters import merge_adapters

    merge_adapters(item.session.model, item.session.cfg.adapters)
    return {k: v.detach().clone() for k, v in item.session.model.backbone.model.state_dict().items()}


def _base_state(cfg, kind) -> dict:
    from ..models import build_model

    model, _ = build_model(cfg, kind, None)
    return {k: v.detach().clone() for k, v in model.backbone.model.state_dict().items()}


def _check_shapes(items: list[Ingredient], base: Optional[dict]) -> None:
    reference = base if base is not None else items[0].state
    for item in items:
        if {k: v.shape for k, v in item.state.items()} != {k: v.shape for k, v in reference.items()}:
            raise UserError("the runs' backbones differ in shape (pruned, resized or another architecture)", where=str(item.run_dir))


def _heads(items: list[Ingredient], weights: list[float]) -> dict:
    return methods.average([{k: v.detach() for k, v in it.session.model.heads.state_dict().items()} for it in items], weights)


class _Validation:
    """Scores candidate (backbone, heads) states on the validation split of one task."""

    def __init__(self, item: Ingredient):
        session = item.session
        self.session, self.cfg = session, session.cfg
        self.prepared = session.kind.prepare(self.cfg, session.processor, session.kind.load_data(self.cfg))
        self.metric, self.maximise = self.cfg.train.early_stopping.metric, self.cfg.train.early_stopping.mode != "min"

    def __call__(self, backbone: dict, heads: dict) -> float:
        model = self.session.model
        model.backbone.model.load_state_dict(backbone)
        model.heads.load_state_dict(heads)
        metrics = self.session.kind.evaluate(self.cfg, model, self.prepared, "validation", self.session.processor).metrics
        return float(metrics[self.metric])

    def better_or_equal(self, a: float, b: float) -> bool:
        return a >= b if self.maximise else a <= b


def greedy_soup(items: list[Ingredient]) -> tuple[dict, dict, dict]:
    """(backbone state, heads state, record) of the greedy soup of ``items`` (one task)."""
    if len({it.group for it in items}) > 1:
        raise UserError("a soup averages runs of one task (same name and label set)", where="--method greedy_soup")
    score = _Validation(items[0])
    heads = [{k: v.detach().clone() for k, v in it.session.model.heads.state_dict().items()} for it in items]
    alone = [score(it.state, h) for it, h in zip(items, heads)]
    order = sorted(range(len(items)), key=lambda i: alone[i], reverse=score.maximise)
    soup, best, trail = [order[0]], alone[order[0]], []
    for i in order[1:]:
        candidate = soup + [i]
        value = score(methods.average([items[j].state for j in candidate]), methods.average([heads[j] for j in candidate]))
        kept = score.better_or_equal(value, best)
        trail.append({"run": str(items[i].run_dir), "soup_validation": value, "kept": kept})
        if kept:
            soup, best = candidate, value
    record = {"metric": score.metric, "ingredients_validation": {str(it.run_dir): v for it, v in zip(items, alone)},
              "order": [str(items[i].run_dir) for i in order], "trail": trail, "kept": [str(items[i].run_dir) for i in soup],
              "soup_validation": best}
    return methods.average([items[j].state for j in soup]), methods.average([heads[j] for j in soup]), record


def _delta_merge(items: list[Ingredient], request: MergeRequest, weights: list[float]) -> tuple[dict, Optional[dict], dict]:
    """Merged plain backbone weights (and, for a greedy soup, the soup's heads)."""
    for item in items:
        item.state = _plain_state(item)
    needs_base = request.method in ("task_arithmetic", "ties", "dare") or request.with_base > 0
    cfg, kind = items[0].session.cfg, items[0].session.kind
    base = _base_state(cfg, kind) if needs_base else None
    _check_shapes(items, base)
    record: dict = {}
    heads = None
    states = [it.state for it in items]
    if request.method == "average":
        merged = methods.average(states, weights)
    elif request.method == "greedy_soup":
        merged, heads, record["greedy_soup"] = greedy_soup(items)
    else:
        vectors = methods.task_vectors(states, base)
        if request.method == "task_arithmetic":
            merged = methods.task_arithmetic(base, vectors, weights, request.scale)
        elif request.method == "ties":
            merged = methods.ties(base, vectors, weights, request.density, request.scale)
        else:
            merged = methods.dare(base, vectors, weights, request.density, request.scale, request.seed)
    if base is not None:
        merged = methods.toward_base(merged, base, request.with_base)
    return merged, heads, record


def _choose_path(items: list[Ingredient], request: MergeRequest) -> str:
    from .lora import explain_refusal, peft_mergeable

    if request.lora == "delta" or request.method == "greedy_soup":
        return "delta"
    mergeable = [peft_mergeable(it.session.cfg) for it in items]
    if request.lora == "peft":
        bad = [explain_refusal(it.session.cfg, str(it.run_dir)) for it, ok in zip(items, mergeable) if not ok]
        if bad:
            raise UserError("peft's add_weighted_adapter cannot merge " + "; ".join(bad), where="--lora peft",
                            expected="--lora delta (explicit ΔW sums on merged weights)")
        return "peft"
    return "peft" if all(mergeable) else "delta"


def merge_runs(runs: list[str], out_dir, request: MergeRequest) -> dict:
    """Merge ``runs`` into ``out_dir``; returns a summary {runs written, method, path, scores}."""
    from ..atomic import atomic_folder
    from ..derived import check_new_folder, fill_run, plain_metrics, scored_summary
    from ..registry import ADAPTERS
    from ..spec import AdapterSpec

    out_dir = Path(out_dir)
    check_new_folder(out_dir)
    request.check(len(runs))
    tick = time.perf_counter()
    items = _load(runs)
    weights = request.weights or [1.0] * len(items)
    path = _choose_path(items, request)
    record = {"method": request.method, "runs": [str(it.run_dir) for it in items], "weights": weights, "scale": request.scale,
              "density": request.density, "with_base": request.with_base, "path": path, "seed": request.seed}
    soup_heads = None
    if path == "peft":
        from .lora import merge_with_peft

        scaled = [w * (1 - request.with_base) * (request.scale if request.method != "average" else 1 / sum(weights)) for w in weights]
        options, record["peft_combination"] = merge_with_peft([it.session for it in items], [it.run_dir for it in items],
                                                               request.method, scaled, request.density)
        adapters = {"merged": AdapterSpec(method="lora", options=options)}
        host_model = items[0].session.model
        merged = None
    else:
        merged, soup_heads, extra = _delta_merge(items, request, weights)
        record.update(extra)
        adapters = {"merged": AdapterSpec(method="full", options=ADAPTERS.get("full").parse_options({}))}
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.group, []).append(i)
    record["heads"] = "averaged" if len(groups) == 1 else "kept per task"
    written, scores = [], {}
    with atomic_folder(out_dir) as folder:
        for members in groups.values():
            lead = items[members[0]]
            session = lead.session
            model = host_model if path == "peft" else session.model  # peft: the merged adapter lives in the first run's model
            if merged is not None:
                model.backbone.model.load_state_dict(merged)
            heads = soup_heads if soup_heads is not None else _heads([items[i] for i in members], [weights[i] for i in members])
            model.heads.load_state_dict(heads)
            model.attach()
            model.eval()
            session.cfg.adapters = adapters
            target = folder if len(groups) == 1 else folder / session.cfg.name
            summary = {"task": session.cfg.name, "derived_by": "mmsft merge", "merge": {k: record[k] for k in ("method", "path")},
                       "runs": [str(items[i].run_dir) for i in members], **model.param_counts(), "test": {}}
            if request.test:
                session.data = session.kind.load_data(session.cfg)
                prepared = session.kind.prepare(session.cfg, session.processor, session.data)
                summary = scored_summary(session, model, prepared, "mmsft merge", {"merge": summary["merge"], "runs": summary["runs"]})
            fill_run(target, session, model, summary, {"merge.json": record})
            scores[session.cfg.name] = plain_metrics(summary["test"])
            written.append(str(out_dir if len(groups) == 1 else out_dir / session.cfg.name))
    return {"runs": written, "method": request.method, "path": path, "test": scores,
            "seconds": round(time.perf_counter() - tick, 1), **({"greedy_soup": record["greedy_soup"]} if "greedy_soup" in record else {})}
