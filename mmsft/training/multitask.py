"""The ``multitask`` objective: several tasks' heads on one backbone, one task per batch.

Batches come from a ``GroupBatchSampler`` over the tasks (``sampling``: proportional, temperature
with ``temperature`` T, round_robin); a batch carries the head it trains (``heads``), and its loss is
scaled by that task's ``weights`` entry (default 1).  ``passes: {task: n}`` (proportional sampling)
spreads n passes over a task's data across the run's ``train.epochs`` instead of one per epoch: each
member can get the budget it has alone while every member still ends at the end of the schedule.  ``stopping: per_task`` stops sampling a task
whose validation metric has not improved for ``patience`` evaluations and restores that task's head
and its task-specific adapters (``adapters: {NAME: {task: ...}}``) to their best weights at the end
(the shared adapters keep their last weights: they serve every task); ``combined`` (the default) leaves early stopping to the runner, on
the mean of the members' metrics or on any one of them (``train.early_stopping.metric``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import UserError
from ..registry import OBJECTIVES
from .callbacks import Callback
from .objectives import Objective
from .sampling import GroupBatchSampler


@dataclass
class MultitaskOptions:
    sampling: Literal["proportional", "temperature", "round_robin"] = "proportional"
    temperature: float = 2.0  # sampling: temperature -> task probability proportional to size ** (1 / T)
    weights: dict[str, float] = field(default_factory=dict)  # task -> loss weight (default 1)
    stopping: Literal["combined", "per_task"] = "combined"
    patience: int = 2  # per_task: evaluations without improvement before a task stops being sampled
    passes: dict[str, float] = field(default_factory=dict)  # task -> passes over its data in the run (default train.epochs)

    def validate(self, path: str) -> None:
        if self.temperature <= 0 or self.patience < 1 or any(w < 0 for w in self.weights.values()):
            raise UserError("temperature must be > 0, patience >= 1 and weights >= 0", where=path)
        if any(not n > 0 for n in self.passes.values()):
            raise UserError(f"passes must be > 0, got {self.passes}", where=f"{path}.passes")
        if self.passes and self.sampling != "proportional":
            raise UserError("passes apply to proportional sampling", where=f"{path}.passes",
                            expected=f"sampling: proportional (not {self.sampling}), or no passes")


@OBJECTIVES.register("multitask")
class Multitask(Objective):
    Options = MultitaskOptions

    def __init__(self, options: MultitaskOptions):
        super().__init__(options)
        self.sampler, self.tasks, self.metrics, self.groups = None, [], {}, []

    def bind(self, prepared) -> None:
        """The kind's task list (group id -> head name), each sample's task and each task's monitored key."""
        if "tasks" not in prepared.extra:
            raise UserError("the multitask objective needs a multi-task run", where="objective.name", expected="kind: multitask")
        self.tasks, self.groups = list(prepared.extra["tasks"]), list(prepared.groups["task"])
        self.metrics = dict(prepared.extra["task_metrics"])
        for key in ("weights", "passes"):
            unknown = sorted(set(getattr(self.options, key)) - set(self.tasks))
            if unknown:
                raise UserError(f"{key} name tasks {unknown} that the run does not have", where=f"objective.{key}",
                                expected="some of: " + ", ".join(self.tasks))

    def batch_sampler(self, spec, lengths, num_replicas: int = 1, rank: int = 0):
        shares = {self.tasks.index(t): n / spec.epochs for t, n in self.options.passes.items()} or None
        self.sampler = GroupBatchSampler(lengths, self.groups, spec.batch_size, spec.seed, self.options.sampling,
                                         self.options.temperature, spec.group_by_length, num_replicas, rank, shares)
        return self.sampler

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        heads = batch.get("heads")
        if not heads or len(heads) != 1:
            raise ValueError("a multi-task batch names the one head it trains (batch['heads'])")
        out = model(**batch)
        weight = self.options.weights.get(heads[0], 1.0)
        return (out["loss"] * weight if weight != 1.0 else out["loss"]), {}

    def callbacks(self) -> list:
        return [PerTaskStopping(self)] if self.options.stopping == "per_task" else []


class PerTaskStopping(Callback):
    """Per task: best validation value, evaluations without improvement, and the best weights of what
    the task owns alone: its head and its task-specific adapters."""

    def __init__(self, objective: Multitask):
        self.objective, self.best, self.bad, self.weights = objective, {}, {}, {}

    @staticmethod
    def owned(model, task: str) -> dict[str, torch.Tensor]:
        """``head.<key>`` and ``adapter.<parameter name>`` -> what only ``task`` uses (its task-specific adapters'
        parameters as the adapter stack recorded them when applying them)."""
        out = {f"head.{k}": v for k, v in model.heads[task].state_dict(keep_vars=True).items()}
        names = getattr(model.adapter_router, "owned", {}).get(task, ())
        if names:
            params = dict(model.named_parameters())
            out.update({f"adapter.{n}": params[n] for n in names})
        return out

    def on_evaluate(self, runner, state, metrics: dict) -> None:
        obj = self.objective
        model = runner.accelerator.unwrap_model(runner.model)
        for task in obj.tasks:
            value = metrics.get(obj.metrics[task])
            if value is None:
                continue
            if task not in self.best or value > self.best[task]:
                self.best[task], self.bad[task] = value, 0
                self.weights[task] = {k: v.detach().cpu().clone() for k, v in self.owned(model, task).items()}
            else:
                self.bad[task] = self.bad.get(task, 0) + 1
        self._stop_sampling()

    def _stop_sampling(self) -> None:
        obj = self.objective
        stopped = {g for g, t in enumerate(obj.tasks) if self.bad.get(t, 0) >= obj.options.patience}
        if obj.sampler is not None and stopped:
            obj.sampler.active = set(range(len(obj.tasks))) - stopped or None  # takes effect from the next epoch

    @torch.no_grad()
    def on_train_end(self, runner, state) -> None:
        model = runner.accelerator.unwrap_model(runner.model)
        for task, weights in self.weights.items():
            current = self.owned(model, task)
            for key, value in weights.items():
                current[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"weights.{t}.{k}": v for t, w in self.weights.items() for k, v in w.items()}
        for task in self.best:
            out[f"score.{task}"] = torch.tensor([self.best[task], float(self.bad.get(task, 0))], dtype=torch.float64)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            kind, task, *rest = key.split(".", 2)
            if kind == "score":
                self.best[task], self.bad[task] = float(value[0]), int(value[1])
            else:  # "weights.<task>.<head.|adapter.>key"; "head.<task>.key" in checkpoints written before adapters were kept
                self.weights.setdefault(task, {})[rest[0] if kind == "weights" else f"head.{rest[0]}"] = value
        self._stop_sampling()
