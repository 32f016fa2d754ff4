"""Runner callbacks: hooks on train begin/end, each optimizer step, each evaluation and each save.

``train.callbacks: [{name: ema, decay: 0.999}]`` builds them from config (``CALLBACKS``); code may
also pass ``Callback`` objects to ``Runner`` / ``pipeline.train``.  A callback with state returns
it from ``state_dict`` (tensors), which the runner stores in every checkpoint, so resume is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import from_dict
from ..errors import UserError
from ..registry import CALLBACKS


class Callback:
    Options: type = object

    def on_train_begin(self, runner, state) -> None: ...
    def on_step_end(self, runner, state) -> None: ...
    def before_evaluate(self, runner, state) -> None: ...
    def on_evaluate(self, runner, state, metrics: dict) -> None: ...
    def on_save(self, runner, state, path) -> None: ...
    def on_train_end(self, runner, state) -> None: ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass
class EmaOptions:
    decay: float = 0.999  # shadow = decay * shadow + (1 - decay) * weight, after every optimizer step
    evaluate_with_ema: bool = True  # validation (and the final model) use the averaged weights

    def validate(self, path: str) -> None:
        if not 0 < self.decay < 1:
            raise UserError(f"decay must be in (0, 1), got {self.decay}", where=f"{path}.decay", expected="e.g. 0.999")


@CALLBACKS.register("ema")
class ExponentialMovingAverage(Callback):
    """An exponential moving average of the trainable weights (Polyak averaging): smoother, often
    better-generalising weights at no extra backward cost.  Validation runs on the averaged weights
    and training ends with them loaded, so early stopping and the saved model see the average."""

    Options = EmaOptions

    def __init__(self, options: EmaOptions):
        self.options = options
        self.shadow: dict[str, torch.Tensor] = {}
        self._raw: dict[str, torch.Tensor] = {}

    def _params(self, runner) -> dict[str, torch.nn.Parameter]:
        model = runner.accelerator.unwrap_model(runner.model)
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, runner, state) -> None:
        if not self.shadow:
            self.shadow = {n: p.detach().float().clone() for n, p in self._params(runner).items()}

    @torch.no_grad()
    def on_step_end(self, runner, state) -> None:
        decay = self.options.decay
        for name, param in self._params(runner).items():
            self.shadow[name].mul_(decay).add_(param.detach().float(), alpha=1 - decay)

    @torch.no_grad()
    def _swap_in(self, runner) -> None:
        for name, param in self._params(runner).items():
            self._raw[name] = param.detach().clone()
            param.copy_(self.shadow[name].to(param.dtype))

    @torch.no_grad()
    def _swap_out(self, runner) -> None:
        for name, param in self._params(runner).items():
            param.copy_(self._raw.pop(name))

    def before_evaluate(self, runner, state) -> None:
        if self.options.evaluate_with_ema:
            self._swap_in(runner)

    def on_evaluate(self, runner, state, metrics: dict) -> None:
        if self.options.evaluate_with_ema:
            self._swap_out(runner)

    @torch.no_grad()
    def on_train_end(self, runner, state) -> None:
        for name, param in self._params(runner).items():
            param.copy_(self.shadow[name].to(param.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k[len("ema."):]: v.clone() for k, v in state.items() if k.startswith("ema.")}


def build_callbacks(specs: list, report_to=()) -> list[Callback]:
    """``train.callbacks`` entries (``{name, ...options}``) -> callbacks, then one experiment tracker per
    ``train.report_to`` name (``mmsft.training.trackers``: tensorboard, mlflow, jsonl) not already listed."""
    listed = {(s if isinstance(s, str) else dict(s).get("name")) for s in specs or []}
    specs = [*(specs or []), *(name for name in report_to or () if name not in listed)]
    out = []
    for i, raw in enumerate(specs or []):
        raw = {"name": raw} if isinstance(raw, str) else dict(raw)
        if "name" not in raw:
            raise UserError("each callback needs a 'name'", where=f"train.callbacks[{i}]", expected="{name: ema, ...}")
        cls = CALLBACKS.get(raw.pop("name"))
        out.append(cls(from_dict(cls.Options, raw, f"train.callbacks[{i}]")))
    return out


def parse_callbacks(specs: list) -> list[Any]:
    """Validate ``train.callbacks`` at config time (names and options), without building anything."""
    build_callbacks(specs)
    return list(specs or [])
