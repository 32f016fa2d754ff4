"""The ``TaskKind`` interface every task kind implements, and the shapes it exchanges."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import from_dict
from ..errors import UserError, suggest
from ..registry import Registry


@dataclass
class Prepared:
    """Model-ready splits: datasets of tensors-to-be, a collate function, lengths for batching."""

    splits: dict[str, Any]
    collate: Callable
    lengths: dict[str, list[int]]
    groups: dict[str, list[int]] = field(default_factory=dict)  # train-sample group ids for balanced samplers ("class", "cluster")


@dataclass
class EvalOutput:
    metrics: dict[str, Any]
    predictions: list = field(default_factory=list)
    references: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class TaskKind:
    """Subclasses set ``name``, ``DataSpec`` and ``metric_names`` and implement the hooks."""

    name = ""
    DataSpec: type = object
    ModelOptions: Optional[type] = None  # schema of ``model.options``; None: the kind takes none
    metric_names: tuple[str, ...] = ()
    writes_files = False  # True: ``predict`` also gets ``out_dir`` and writes files there (annotated images)

    # -- configuration ---------------------------------------------------------------------------
    def parse_data(self, raw: Any) -> Any:
        return raw if isinstance(raw, self.DataSpec) else from_dict(self.DataSpec, raw, "data")

    def parse_model_options(self, raw: Any) -> Any:
        if self.ModelOptions is None:
            if raw:
                raise UserError(f"a {self.name} task takes no model options", where="model.options")
            return raw
        return raw if isinstance(raw, self.ModelOptions) else from_dict(self.ModelOptions, raw or {}, "model.options")

    def check_metrics(self, names: list[str]) -> None:
        for i, name in enumerate(names):
            if name not in self.metric_names:
                raise UserError(f"metric '{name}' does not fit a {self.name} task.{suggest(name, self.metric_names)}",
                                where=f"metrics[{i}]", expected="one of: " + ", ".join(self.metric_names))

    # -- hooks -----------------------------------------------------------------------------------
    def load_data(self, cfg) -> dict[str, Any]:
        """Read, validate, clean and split the raw data (errors before any run folder exists)."""
        raise NotImplementedError

    def build_model(self, cfg, data) -> tuple[Any, Any]:
        """(TaskModel, processor) with pretrained backbone and fresh heads."""
        raise NotImplementedError

    def prepare(self, cfg, processor, data) -> Prepared:
        raise NotImplementedError

    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        raise NotImplementedError

    def predict(self, cfg, model, processor, inputs: list[str]) -> list[dict]:
        """One result row per input; kinds with ``writes_files`` take ``out_dir=`` too."""
        raise NotImplementedError

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        """Markdown sections (and PNGs written into run_dir) specific to this kind."""
        return []

    def data_summary(self, data) -> dict:
        return {}

    def save_processor(self, processor, folder: Path) -> None:
        if hasattr(processor, "save_pretrained"):
            processor.save_pretrained(folder)


KINDS: Registry[TaskKind] = Registry("task kind")


def register_kind(cls: type) -> type:
    KINDS.add(cls.name, cls())
    return cls


def resolve_data_path(cfg_data, relative: str) -> Path:
    from .. import paths

    root = Path(cfg_data.root).expanduser() if getattr(cfg_data, "root", None) else paths.data_root()
    return root / relative
