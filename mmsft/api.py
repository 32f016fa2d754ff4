"""The Python API: ``mmsft.train``, ``mmsft.load`` and ``Run`` -- the CLI's code path, from a notebook.

Why a thin layer: each call does what its command does, through the same functions
(``spec.build_run_config`` -> ``pipeline.train``; ``pipeline.evaluate_run``; ``pipeline.load_run`` + the
kind's ``predict`` per batch, ``mmsft.bulk``; ``mmsft.export``), so a run made here is a run folder like
any other (``mmsft eval`` / ``predict`` / ``runs`` read it) and bad input raises the same
``mmsft.errors.UserError`` with the same message.  Overrides may be a dict (``{"train.lr": 5e-4}``,
values as Python objects) or the CLI's ``"key=value"`` strings.

    import mmsft
    run = mmsft.train("finance_sentiment", adapter="lora", overrides={"train.epochs": 1}, output="runs/fs")
    run.metrics["test"]                     # what metrics.json holds
    run.evaluate(split="validation")        # {"accuracy": ..., ...}
    run.predict(["Profit rose 5%."])        # [{"label": "positive", "score": ..., "scores": {...}}]
    run.export("hf", out="exports/fs")      # a folder transformers loads alone
    mmsft.tasks.register({...})             # a task from a dict, then mmsft.train("its_name")

Nothing heavy is imported here: torch loads on the first call that needs it.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from .errors import UserError

Overrides = Union[Mapping[str, Any], Sequence[str], None]


def _yaml_value(value: Any) -> str:
    """A Python value as the YAML text ``config.parse_override`` reads back as the same value."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy / torch integers too
        return str(int(value))
    if isinstance(value, numbers.Real):  # numpy floats repr as np.float64(...): go through float
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:  # PyYAML reads 1e-05 as a string, 1.0e-05 as a float
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        return json.dumps(os.fspath(value))
    raise UserError(f"cannot pass a {type(value).__name__} as an override value", where="overrides",
                    expected="numbers, strings, booleans, None, lists and dicts")


def override_strings(overrides: Overrides) -> list[str]:
    """``{"train.lr": 5e-4}`` or ``["train.lr=5e-4"]`` -> the CLI's ``key=value`` strings."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise UserError("overrides is a dict or a list of 'key=value' strings, not one string", where="overrides",
                        expected='{"train.lr": 5e-4} or ["train.lr=5e-4"]')
    if isinstance(overrides, Mapping):
        return [f"{key}={_yaml_value(value)}" for key, value in overrides.items()]
    return [str(o) for o in overrides]


class Run:
    """A finished (or unfinished) run folder: its metrics and config, evaluation, prediction, export."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise UserError("not a run folder (no config.yaml)", where=str(self.path))
        self._sessions: dict[tuple[str, ...], Any] = {}

    def __repr__(self) -> str:
        state = "finished" if self.finished else "unfinished"
        return f"Run({str(self.path)!r}, {state})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def finished(self) -> bool:
        return (self.path / "metrics.json").is_file()

    @property
    def metrics(self) -> dict:
        """``metrics.json``: test metrics, best validation, time, memory, parameter counts."""
        if not self.finished:
            raise UserError("this run's training did not finish (no metrics.json)", where=str(self.path))
        return json.loads((self.path / "metrics.json").read_text())

    @property
    def config(self):
        """The ``RunConfig`` the run was trained with (from its ``config.yaml``)."""
        from .spec import load_run_config

        return load_run_config(self.path)

    def _session(self, overrides: Overrides):
        from .pipeline import load_run

        key = tuple(override_strings(overrides))
        if key not in self._sessions:
            self._sessions[key] = load_run(self.path, list(key))
        return self._sessions[key]

    def evaluate(self, split: str = "test", overrides: Overrides = None) -> dict:
        """The kind's metrics on ``split`` (what ``mmsft eval RUN --split SPLIT --set ...`` prints, lists included)."""
        from .pipeline import evaluate_run

        if split not in ("train", "validation", "test"):
            raise UserError(f"unknown split '{split}'", where="split", expected="train, validation or test")
        return dict(evaluate_run(self.path, split, override_strings(overrides)).metrics)

    def predict(self, inputs: Union[str, Sequence[str]], batch_size: int = 32, *, task: Optional[str] = None,
                out_dir: Union[str, os.PathLike, None] = None, overrides: Overrides = None):
        """Predictions for texts (or image paths), ``batch_size`` per call of the kind's ``predict``.

        One string in: one row out; a list in: a list out.  ``task`` picks a multi-task member's head;
        image tasks that draw (detection) write into ``out_dir`` when it is given."""
        extra = override_strings(overrides) + ([f"data.predict_task={task}"] if task else [])
        single = isinstance(inputs, (str, os.PathLike))
        items = [os.fspath(inputs)] if single else [os.fspath(i) if isinstance(i, os.PathLike) else i for i in inputs]
        if not items:
            return []
        from .bulk import predict_batches

        rows = predict_batches(self._session(extra), items, batch_size, Path(out_dir) if out_dir else None)
        return rows[0] if single else rows

    def export(self, format: str = "hf", out: Union[str, os.PathLike, None] = None) -> Path:
        """``mmsft export RUN --format FORMAT --out OUT``: a folder loadable without mmsft; returns it."""
        from .export import export_run

        return export_run(self.path, format, out)


def train(task: Union[str, os.PathLike, Mapping], adapter: Union[str, Sequence[str], None] = None, overrides: Overrides = None,
          output: Union[str, os.PathLike, None] = None, *, resume: bool = False) -> Run:
    """Fine-tune ``task`` (a name, a YAML path, or a spec dict, which is registered first) and return its ``Run``.

    ``adapter``: a preset name, a comma-separated stack or a list; ``output``: the run folder (default
    ``runs/TASK-ADAPTER-TIMESTAMP``); ``resume=True`` continues ``output`` from its last checkpoint."""
    from .pipeline import train as train_pipeline
    from .spec import build_run_config, load_run_config

    if resume:
        if output is None:
            raise UserError("resume=True needs output=RUN, the run folder to continue", where="mmsft.train")
        return Run(train_pipeline(load_run_config(output), Path(output), resume=True))
    if isinstance(task, Mapping):
        from .tasks import register

        task = register(task, adapter=",".join(adapter) if isinstance(adapter, (list, tuple)) else adapter)
    cfg = build_run_config(os.fspath(task), list(adapter) if isinstance(adapter, (list, tuple)) else adapter, override_strings(overrides))
    if output is not None:
        cfg.output_dir = os.fspath(output)
    return Run(train_pipeline(cfg))


def load(run: Union[str, os.PathLike, Run]) -> Run:
    """A trained run folder as a ``Run`` (``mmsft.load("runs/fs").predict([...])``)."""
    return run if isinstance(run, Run) else Run(run)


__all__ = ["Run", "load", "override_strings", "train"]
