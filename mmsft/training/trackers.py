"""Experiment trackers as runner callbacks: ``train.report_to: [tensorboard, mlflow, jsonl]``.

Why callbacks over accelerate's trackers: accelerate already speaks TensorBoard and MLflow
(``accelerate.tracking``), so these callbacks only feed it; the runner stays tracker-agnostic and
``report_to`` is off by default (``[]``).  What they log mirrors ``metrics.jsonl``, the runner's one
log, so every tracker shows exactly what the run folder holds:

* hyperparameters: the run's ``config.yaml`` flattened to dotted keys (``train.lr``, ``adapters.lora.options.r``);
* ``train/loss``, ``train/lr``, ``train/epoch`` and ``train/samples_per_second`` (throughput between the
  previous train record and this one, wall clock: evaluations in between count) at each
  ``train.log_every_steps``, and ``train/mean_samples_per_second`` (the runner's own) at the end;
* ``eval/<metric>`` at each validation, ``train/skipped_steps`` / ``train/overflow_steps`` as they happen.

Each callback tails ``metrics.jsonl`` from where it stood when training began (a resumed run's log is
trimmed first), on the main process only.  Where the files go:

* ``tensorboard``: ``RUN/tensorboard/`` (event files; the hyperparameters also as ``hparams.yml``);
* ``mlflow``: the tracking URI in ``MLFLOW_TRACKING_URI``, else a file store ``RUN/mlruns`` (MLflow's file
  backend, which MLflow 3 keeps behind ``MLFLOW_ALLOW_FILE_STORE``: set here); experiment
  ``MLFLOW_EXPERIMENT_NAME`` or ``options.project`` or the task name; the run is named after the folder;
* ``jsonl``: ``RUN/tracking.jsonl`` (one ``{"type": "hparams"}`` line, then one line per log call), an
  accelerate ``GeneralTracker`` of our own for machines with neither of the above.

They are ``CALLBACKS`` entries too, so ``train.callbacks: [{name: tensorboard, logging_dir: /tb}]`` works.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import dotted_keys
from ..registry import CALLBACKS
from .callbacks import Callback
from .logfile import json_records

TRACKERS = ("tensorboard", "mlflow", "jsonl")  # the names ``train.report_to`` takes


@dataclass
class TrackerOptions:
    logging_dir: Optional[str] = None  # default: inside the run folder (see the module docstring)
    project: Optional[str] = None  # MLflow experiment name; default: the task name


def hyperparameters(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as flat ``{dotted.key: int | float | str | bool}`` (lists as JSON)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    return dotted_keys(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


class LogTail:
    """New complete lines of a JSONL file since the last read (a torn last line waits for its end)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0

    def records(self) -> list[dict]:
        if not self.path.is_file() or self.path.stat().st_size <= self.offset:
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [r for r in json_records(complete.decode("utf-8", errors="replace").splitlines()) if isinstance(r.get("step"), int)]


def _numbers(record: dict, prefix: str, skip=("type", "step")) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in record.items()
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TrackerCallback(Callback):
    """Feeds one accelerate tracker from ``metrics.jsonl``; subclasses build the tracker (``make``)."""

    Options = TrackerOptions

    def __init__(self, options: TrackerOptions):
        self.options = options
        self.tracker = None
        self._tail: Optional[LogTail] = None
        self._marks: dict[int, tuple[float, int]] = {}  # step -> (time, samples seen) when it ended
        self._last = 0  # the step of the previous train record

    def make(self, run_dir: Path):
        raise NotImplementedError

    def folder(self, run_dir: Path) -> Path:
        return Path(self.options.logging_dir).expanduser() if self.options.logging_dir else run_dir

    def on_train_begin(self, runner, state) -> None:
        if not runner.accelerator.is_main_process or self.tracker is not None:
            return
        run_dir = Path(runner.run_dir)
        self.tracker = self.make(run_dir)
        self.tracker.start()
        self.tracker.store_init_configuration(hyperparameters(run_dir))
        self._tail = LogTail(run_dir / "metrics.jsonl")
        self._marks, self._last = {state.step: (time.perf_counter(), state.samples_seen)}, state.step

    def _flush(self, state) -> None:
        if self.tracker is None:
            return
        for record in self._tail.records():
            kind, step = record.get("type"), record["step"]
            if kind == "train":
                values = _numbers(record, "train")
                start, end = self._marks.get(self._last), self._marks.get(step)
                if start and end and end[0] > start[0]:
                    values["train/samples_per_second"] = (end[1] - start[1]) / (end[0] - start[0])
                self._last = step
                self._marks = {k: v for k, v in self._marks.items() if k >= step}
            elif kind == "eval":
                values = _numbers(record, "eval", skip=("type", "step", "epoch"))
            elif kind == "skip":
                values = {"train/skipped_steps": state.skipped_steps}
            elif kind == "overflow":
                values = {"train/overflow_steps": state.overflow_steps, **_numbers({"loss_scale": record.get("scale")}, "train")}
            else:
                continue
            if values:
                self.tracker.log(values, step=step)

    def on_step_end(self, runner, state) -> None:
        if self.tracker is not None:
            self._marks[state.step] = (time.perf_counter(), state.samples_seen)
        self._flush(state)

    def on_evaluate(self, runner, state, metrics: dict) -> None:
        self._flush(state)

    def on_train_end(self, runner, state) -> None:
        if self.tracker is None:
            return
        self._flush(state)
        if state.train_seconds > 0:
            self.tracker.log({"train/mean_samples_per_second": state.samples_seen / state.train_seconds}, step=state.step)
        self.tracker.finish()
        self.tracker = None


@CALLBACKS.register("tensorboard")
class TensorBoard(TrackerCallback):
    """accelerate's ``TensorBoardTracker``: event files under ``RUN/tensorboard/``."""

    def make(self, run_dir: Path):
        from accelerate.tracking import TensorBoardTracker

        return TensorBoardTracker("tensorboard", str(self.folder(run_dir)))


@CALLBACKS.register("mlflow")
class MLflow(TrackerCallback):
    """accelerate's ``MLflowTracker``; without ``MLFLOW_TRACKING_URI`` a file store in ``RUN/mlruns``."""

    def make(self, run_dir: Path):
        import mlflow
        from accelerate.tracking import MLflowTracker

        if not os.environ.get("MLFLOW_TRACKING_URI"):  # MLflow 3 keeps its file store for those who opt in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((self.folder(run_dir) / "mlruns").resolve().as_uri())
        import yaml

        task = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("name") if (run_dir / "config.yaml").is_file() else None
        return MLflowTracker(experiment_name=self.options.project or task or "mmsft", run_name=run_dir.name)


def _jsonl_tracker_class():
    """An accelerate ``GeneralTracker`` writing JSON lines (built lazily: accelerate imports torch)."""
    from accelerate.tracking import GeneralTracker

    class JsonlTracker(GeneralTracker):
        name = "jsonl"
        requires_logging_directory = True

        def __init__(self, path: Path):
            super().__init__()
            self.path, self._fh = path, None

        @property
        def tracker(self):
            return self._fh

        def start(self):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")

        def _write(self, record: dict) -> None:
            self._fh.write(json.dumps(record, default=str) + "\n")
            self._fh.flush()

        def store_init_configuration(self, values: dict):
            self._write({"type": "hparams", "time": time.time(), **values})

        def log(self, values: dict, step: Optional[int] = None, **kwargs):
            self._write({"type": "log", "step": step, "time": time.time(), **values})

        def finish(self):
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    return JsonlTracker


@CALLBACKS.register("jsonl")
class Jsonl(TrackerCallback):
    """A JSON-lines tracker (``RUN/tracking.jsonl``), for machines without TensorBoard or MLflow."""

    def make(self, run_dir: Path):
        return _jsonl_tracker_class()(self.folder(run_dir) / "tracking.jsonl")
