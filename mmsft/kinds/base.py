"""The ``TaskKind`` interface: everything that differs between task kinds, asked through one object.

A kind owns its data schema and reading, the heads it puts on the shared backbone, batching,
evaluation, prediction, report sections, and its bindings for ``mmsft data check`` (a raw view of the
data, the cleaned copy) and ``mmsft data augment`` (the augmented copy).  The pipeline, ``dataqc``
and ``augment`` call these hooks and never branch on the kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..errors import UserError, suggest
from ..registry import KINDS
from ..training.data import Prepared  # noqa: F401  (re-exported: kinds build it)


@dataclass
class EvalOutput:
    metrics: dict[str, Any]
    predictions: list = field(default_factory=list)
    references: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class TaskKind:
    """Subclasses set the class attributes and implement the hooks."""

    name = ""
    DataSpec: type = object
    metric_inputs = "class_ids"  # what the kind predicts: its metrics are the ones scoring that (``metrics_for``)
    extra_validation_keys: tuple[str, ...] = ()  # validation results besides the metrics' (generation: loss)
    backbone_family = "text"  # BACKBONE_FAMILIES entry the task's backbone is loaded as
    tower_families: dict[str, str] = {}  # towers the kind takes (``model.towers``): name -> family
    head_types: tuple[str, ...] = ()  # HEADS entries that fit this kind (the first is the default)
    writes_files = False  # True: ``predict`` also gets ``out_dir`` and writes files there (annotated images)
    pads_to_multiple = False  # True: the kind's collate honours ``train.pad_to_multiple_of``

    # -- configuration ---------------------------------------------------------------------------
    def parse_data(self, raw: Any) -> Any:
        return raw if isinstance(raw, self.DataSpec) else from_dict(self.DataSpec, raw, "data")

    def default_heads(self) -> dict[str, dict]:
        """``model.heads`` when the task names none: one head of the kind's default type."""
        return {self.head_types[0]: {"type": self.head_types[0]}}

    @property
    def metric_names(self) -> tuple[str, ...]:
        from ..metrics import metrics_for

        return metrics_for(self.metric_inputs)

    def check_heads(self, cfg) -> None:
        """Validate ``model.heads`` (filling in the default head): see ``mmsft.spec.check_heads``."""
        from ..spec import check_heads

        check_heads(cfg, self)

    def check_adapter_tasks(self, cfg) -> None:
        """``adapters.<name>.task`` belongs to multi-task runs (``MultiTask`` overrides this)."""
        for name, spec in cfg.adapters.items():
            if spec.task is not None:
                raise UserError(f"a {self.name} task has no member tasks for adapter '{name}' to serve",
                                where=f"adapters.{name}.task", expected="no task (task-specific adapters are for kind: multitask)")

    def key_direction(self, key: str):
        """Whether a higher value of validation key ``key`` is better (``<head>/`` prefixes allowed)."""
        from ..metrics import key_direction

        return key_direction(key.rsplit("/", 1)[-1])

    def check_metrics(self, names: list[str], where: str = "metrics") -> None:
        for i, name in enumerate(names):
            if name not in self.metric_names:
                raise UserError(f"metric '{name}' does not fit a {self.name} task.{suggest(name, self.metric_names)}",
                                where=f"{where}[{i}]", expected="one of: " + ", ".join(self.metric_names))

    def head_metrics(self, cfg, head: str) -> list[str]:
        spec = cfg.model.heads[head]
        return list(spec.metrics if spec.metrics is not None else cfg.metrics)

    def validation_keys(self, cfg) -> list[str]:
        """What validation reports (and ``early_stopping.metric`` may name): each head's metric keys,
        prefixed ``<head>/`` when the task has several heads."""
        from ..metrics import result_keys

        keys = []
        for head in cfg.model.heads:
            own = list(dict.fromkeys([*result_keys(self.head_metrics(cfg, head)), *self.extra_validation_keys]))
            keys += own if len(cfg.model.heads) == 1 else [f"{head}/{k}" for k in own]
        return keys

    # -- data ------------------------------------------------------------------------------------
    def load_data(self, cfg) -> Any:
        """Read, validate, clean and split the raw data (errors before any run folder exists)."""
        raise NotImplementedError

    def data_summary(self, data) -> dict:
        return {}

    # -- model -----------------------------------------------------------------------------------
    def backbone_family_for(self, cfg) -> str:
        """The family ``model.backbone`` loads as (a kind may choose by its data, e.g. image-only inputs)."""
        return self.backbone_family

    def adapt_backbone(self, cfg, backbone, processor) -> None:
        """Task-specific changes to the pretrained backbone before adapters (e.g. new token rows)."""

    def build_heads(self, cfg, data, backbone) -> dict[str, Any]:
        """{name: Head} for ``cfg.model.heads`` (fresh weights; ``data`` is None when loading a run)."""
        raise NotImplementedError

    def save_processor(self, processor, folder: Path) -> None:
        if hasattr(processor, "save_pretrained"):
            processor.save_pretrained(folder)

    # -- training and inference ------------------------------------------------------------------
    def prepare(self, cfg, processor, data) -> Prepared:
        raise NotImplementedError

    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        raise NotImplementedError

    def predict(self, cfg, model, processor, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        """One result row per input; kinds with ``writes_files`` write files into ``out_dir``."""
        raise NotImplementedError

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        """Markdown sections (and PNGs written into run_dir) specific to this kind."""
        return []

    # -- data quality and augmentation -----------------------------------------------------------
    def qc_view(self, cfg):
        """The raw view ``mmsft data check`` works on (``mmsft.dataqc.views.QCData``)."""
        raise UserError(f"`data check` has no view for task kind '{self.name}' yet")

    def write_fixed(self, cfg, data, removed: dict, relabel: dict, tmp: Path, out: Path) -> None:
        """``mmsft data check --fix``: write the cleaned copy into ``tmp`` (renamed to ``out`` after)."""
        raise UserError(f"`data check --fix` cannot write task kind '{self.name}' yet")

    def write_augmented(self, cfg, raw: dict, entry, tmp: Path, out: Path) -> dict:
        """``mmsft data augment``: write the augmented copy into ``tmp``; returns counts."""
        raise UserError(f"`data augment` cannot write task kind '{self.name}' yet")


def register_kind(cls: type) -> type:
    KINDS.add(cls.name, cls())
    return cls


def single_head(cfg) -> str:
    """The name of a task's one head (single-head kinds)."""
    if len(cfg.model.heads) != 1:
        raise UserError(f"this task kind takes one head, got {list(cfg.model.heads)}", where="model.heads")
    return next(iter(cfg.model.heads))
