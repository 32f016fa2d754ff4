"""``multitask``: several registered tasks trained together, one head per task on one shared backbone.

Each member keeps its own data, head, loss, metrics and evaluation (its own kind does them); the run
holds the backbone (and its adapters) once and one head per member, named after the task.  Batches
hold one task each (the ``multitask`` objective draws them); validation reports every member's
metrics as ``<task>/<metric>`` and ``combined``, the mean of the members' own early-stopping
metrics.  ``mmsft predict RUN --task NAME`` predicts with that member's head.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...errors import UserError, suggest
from ..base import EvalOutput, Prepared, TaskKind, register_kind


@dataclass
class MultiTaskData:
    tasks: list[str]  # member tasks: names from the task registry or YAML paths
    predict_task: Optional[str] = None  # `mmsft predict --task NAME` sets it: the member whose head predicts
    root: Optional[str] = None  # a data root for every member (default: each member's own)

    def validate(self, path: str) -> None:
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"a multi-task run needs at least two distinct tasks, got {self.tasks}", where=f"{path}.tasks")


class Member:
    """One member task: its config, kind, data and prepared splits."""

    def __init__(self, cfg, kind):
        self.cfg, self.kind, self.name = cfg, kind, cfg.name
        self.data = self.prepared = None


class Batches:
    """The members' train samples as one dataset; a batch (one task) is collated by its member."""

    def __init__(self, members: list[Member]):
        self.members = members
        self.index = [(g, i) for g, m in enumerate(members) for i in range(len(m.prepared.splits["train"]))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        g, i = self.index[k]
        return g, self.members[g].prepared.splits["train"][i]

    def collate(self, items: list) -> dict:
        groups = {g for g, _ in items}
        if len(groups) != 1:
            raise ValueError("a multi-task batch mixes tasks (use the multitask objective's sampler)")
        member = self.members[groups.pop()]
        return {**member.prepared.collate([it for _, it in items]), "heads": [member.name]}


@register_kind
class MultiTask(TaskKind):
    name = "multitask"
    DataSpec = MultiTaskData
    backbone_family = "text"
    head_types = ()  # the members' heads

    # -- members ---------------------------------------------------------------------------------
    def members(self, cfg) -> list[Member]:
        """Each member's config (its own task YAML; the shared backbone and the run's threads), checked."""
        from ...registry import KINDS
        from ...spec import build_run_config

        if getattr(cfg, "_members", None) is not None:
            return cfg._members
        self._last = None
        out = []
        for i, task in enumerate(cfg.data.tasks):
            overrides = [f"data.root={cfg.data.root}"] if cfg.data.root else []
            member = build_run_config(task, None, overrides)
            if member.kind == self.name:
                raise UserError("a member task cannot itself be multi-task", where=f"data.tasks[{i}]")
            if member.model.backbone != cfg.model.backbone:
                raise UserError(f"member '{member.name}' uses backbone '{member.model.backbone}', the shared one is '{cfg.model.backbone}'",
                                where=f"data.tasks[{i}]", expected=f"every member on {cfg.model.backbone}")
            if len(member.model.heads) != 1:
                raise UserError(f"member '{member.name}' has {len(member.model.heads)} heads", where=f"data.tasks[{i}]", expected="one head per member")
            kind = KINDS.get(member.kind)
            if kind.backbone_family_for(member) != self.backbone_family:
                raise UserError(f"member '{member.name}' is a {member.kind} task; multi-task runs share a text backbone", where=f"data.tasks[{i}]")
            member.model.heads = {member.name: next(iter(member.model.heads.values()))}  # the head is named after its task
            member.train.eval_batch_size, member.train.threads = cfg.train.eval_batch_size, cfg.train.threads
            out.append(Member(member, kind))
        cfg._members = self._last = out
        return out

    def members_cached(self) -> list[Member]:
        return getattr(self, "_last", None) or []

    def default_heads(self) -> dict:
        return {}

    def check_heads(self, cfg) -> None:
        """The heads are the members' (each checked by its own kind); the objective must draw one task per batch."""
        if (cfg.objective or {}).get("name") != "multitask":
            raise UserError("a multi-task run trains with the multitask objective", where="objective.name",
                            expected="multitask (objective: {name: multitask, sampling: proportional | temperature | round_robin})")
        cfg.model.heads = {m.name: m.cfg.model.heads[m.name] for m in self.members(cfg)}

    def check_adapter_tasks(self, cfg) -> None:
        """Task-specific adapters name a member and a method that can be switched per batch (LoRA)."""
        from ...registry import ADAPTERS

        names = [m.name for m in self.members(cfg)]
        for name, spec in cfg.adapters.items():
            if spec.task is None:
                continue
            if spec.task not in names:
                raise UserError(f"adapter '{name}' serves task '{spec.task}', which is not a member.{suggest(spec.task, names)}",
                                where=f"adapters.{name}.task", expected="one of: " + ", ".join(names))
            if not ADAPTERS.get(spec.method).switchable:
                raise UserError(f"a {spec.method} adapter cannot be switched on and off per task", where=f"adapters.{name}.method",
                                expected="lora (task-specific adapters are LoRA adapters over the shared one)")

    def key_direction(self, key: str):
        if key == "combined":
            return True
        task, _, rest = key.partition("/")
        member = next((m for m in self.members_cached() if m.name == task), None)
        return member.kind.key_direction(rest) if member is not None else None

    def validation_keys(self, cfg) -> list[str]:
        keys = ["combined"]
        for m in self.members(cfg):
            keys += [f"{m.name}/{k}" for k in m.kind.validation_keys(m.cfg)]
        return keys

    def check_metrics(self, names, where: str = "metrics") -> None:
        """A multi-task run's metrics are its members' own."""

    # -- data and model --------------------------------------------------------------------------
    def load_data(self, cfg):
        members = self.members(cfg)
        for m in members:
            m.data = m.kind.load_data(m.cfg)
        return {m.name: m.data for m in members}

    def data_summary(self, data) -> dict:
        return {name: d for name, d in data.items()} if data else {}

    def adapt_backbone(self, cfg, backbone, processor) -> None:
        for m in self.members(cfg):
            m.kind.adapt_backbone(m.cfg, backbone, processor)

    def build_heads(self, cfg, data, backbone) -> dict:
        heads = {}
        for m in self.members(cfg):
            heads.update(m.kind.build_heads(m.cfg, data[m.name] if data else None, backbone))
        cfg.model.heads = {m.name: m.cfg.model.heads[m.name] for m in self.members(cfg)}  # saved with the run
        return heads

    def prepare(self, cfg, processor, data) -> Prepared:
        members = self.members(cfg)
        for m in members:
            m.prepared = m.kind.prepare(m.cfg, processor, data[m.name])
        train = Batches(members)
        lengths = {"train": [l for m in members for l in m.prepared.lengths["train"]]}
        groups = {"task": [g for g, m in enumerate(members) for _ in m.prepared.lengths["train"]]}
        tasks = [m.name for m in members]
        metrics = {m.name: f"{m.name}/{m.cfg.train.early_stopping.metric}" for m in members}
        return Prepared({"train": train}, train.collate, lengths, groups, deterministic_train=False,
                        extra={"members": members, "tasks": tasks, "task_metrics": metrics})

    # -- evaluation and prediction ---------------------------------------------------------------
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        metrics, outputs = {}, {}
        for m in prepared.extra["members"]:
            model.use_task(m.name)  # its task-specific adapters, if any
            out = m.kind.evaluate(m.cfg, model, m.prepared, split, processor)
            outputs[m.name] = out
            metrics.update({f"{m.name}/{k}": v for k, v in out.metrics.items()})
        own = [metrics[f"{m.name}/{m.cfg.train.early_stopping.metric}"] for m in prepared.extra["members"]]
        metrics["combined"] = sum(own) / len(own)
        return EvalOutput(metrics, extra={"members": outputs})

    def predict(self, cfg, model, processor, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        members = {m.name: m for m in self.members(cfg)}
        task = cfg.data.predict_task
        if task not in members:
            raise UserError(f"name the member task to predict with{'' if task is None else f', not {task!r}'}.{suggest(task or '', members)}",
                            where="--task", expected="one of: " + ", ".join(members))
        m = members[task]
        model.use_task(task)
        return [{"task": task, **row} for row in m.kind.predict(m.cfg, model, processor, inputs, out_dir)]

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        lines = ["## Members (test)\n", "| task | metric | value |", "|---|---|---|"]
        for name, out in test.extra["members"].items():
            lines += [f"| {name} | {k} | {v:.4f} |" for k, v in out.metrics.items() if isinstance(v, float)]
        sections = ["\n".join(lines) + "\n"]
        for m in self.members(cfg):
            folder = run_dir / m.name
            folder.mkdir(exist_ok=True)
            member_sections = m.kind.report_sections(m.cfg, folder, test.extra["members"][m.name], data[m.name] if data else None)
            sections += [f"### {m.name}\n"] + [s.replace("](", f"]({m.name}/") for s in member_sections]
        return sections

    def save_processor(self, processor, folder: Path) -> None:
        if hasattr(processor, "save_pretrained"):
            processor.save_pretrained(folder)

