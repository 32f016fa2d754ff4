"""The run configuration: task spec (``tasks/*.yaml``) + adapter preset (``adapters/*.yaml``) + overrides.

A task YAML names kind, data, model, loss, metrics and training defaults.  The ``data`` block is
checked by the task kind's own schema and the adapter options by the adapter method's own schema
(composition: each plugin owns its config), so unknown keys fail everywhere with a key path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from . import paths
from .config import apply_overrides, deep_merge, from_dict, load_yaml, parse_override, to_dict
from .errors import UserError, suggest


@dataclass
class LossSpec:
    name: str = "cross_entropy"  # see mmsft.training.losses.LOSSES
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weights: Optional[Literal["balanced"]] = None


@dataclass
class EarlyStoppingSpec:
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    patience: int = 0  # evaluations without improvement before stopping; 0 = off
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass
class TrainSpec:
    epochs: float = 3.0
    max_steps: Optional[int] = None
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 5e-5
    head_lr: Optional[float] = None  # defaults to lr
    layer_decay: float = 1.0  # < 1: block i of n trains at lr * layer_decay**(n - i) (1 = one LR for all)
    weight_decay: float = 0.01
    schedule: str = "linear"  # see mmsft.training.schedules.SCHEDULES
    warmup_ratio: float = 0.06
    grad_accum: int = 1
    max_grad_norm: Optional[float] = 1.0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 42
    eval_every_steps: int = 0  # 0 = evaluate at each epoch end
    save_every_steps: int = 0  # 0 = checkpoint only at epoch ends
    keep_checkpoints: int = 1
    group_by_length: bool = True
    sampler: Literal["length", "class_balanced", "cluster_balanced"] = "length"  # see mmsft.training.sampling
    log_every_steps: int = 10
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    cpu_allocator: Literal["keep", "system"] = "keep"  # keep: reuse freed memory on CPU (see mmsft.training.cpu_memory)
    cache_features: bool = True  # frozen deterministic backbone: encode once, train the head
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)

    def validate(self, path: str) -> None:
        if not 0 < self.layer_decay <= 1:
            raise UserError(f"layer_decay must be in (0, 1], got {self.layer_decay}", where=f"{path}.layer_decay",
                            expected="e.g. 0.8 (1 = no decay)")


@dataclass
class ModelSpec:
    backbone: str = "minilm-l6"
    head: str = "classification"
    pooling: Literal["auto", "cls", "mean", "pooler", "last"] = "auto"
    dropout: float = 0.1
    head_hidden: int = 0  # >0 adds a hidden layer to the head
    max_length: int = 128
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific (e.g. detector layout), checked by the kind


@dataclass
class AdapterSpec:
    method: str = "full"  # see mmsft.adapters.ADAPTERS
    options: dict[str, Any] = field(default_factory=dict)  # checked by the method's own schema


@dataclass
class RunConfig:
    name: str
    kind: str
    data: dict[str, Any]
    domain: str = "general"
    description: str = ""
    model: ModelSpec = field(default_factory=ModelSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "f1_macro"])
    train: TrainSpec = field(default_factory=TrainSpec)
    adapter: AdapterSpec = field(default_factory=AdapterSpec)
    output_dir: Optional[str] = None

    def to_dict(self) -> dict:
        return to_dict(self)


def _find_yaml(name_or_path: str, folders: list[Path], what: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise UserError(f"{what} path is a folder; point to a .yaml file (or add the folder to the search path)", where=str(path))
        if not path.is_file():
            raise UserError(f"{what} file not found", where=str(path))
        return path
    for folder in folders:
        candidate = Path(folder) / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = list_names(folders)
    raise UserError(
        f"unknown {what} '{name_or_path}'.{suggest(name_or_path, known)}",
        expected="one of: " + ", ".join(known) + f" (from {', '.join(str(f) for f in folders)}) or a path to a .yaml file",
    )


def list_names(folders: list[Path]) -> list[str]:
    """Names of the YAML files in the search path (an earlier folder shadows a later one)."""
    return sorted({p.stem for folder in folders for p in Path(folder).glob("*.yaml")})


def task_path(name_or_path: str) -> Path:
    return _find_yaml(name_or_path, paths.task_dirs(), "task")


def adapter_path(name_or_path: str) -> Path:
    return _find_yaml(name_or_path, paths.adapter_dirs(), "adapter")


def load_adapter_preset(name_or_path: str) -> dict:
    """Adapter YAML: ``method``, optional ``train`` overrides, the rest are method options."""
    raw = load_yaml(adapter_path(name_or_path))
    raw = dict(raw)
    train = raw.pop("train", {}) or {}
    method = raw.pop("method", None)
    if method is None:
        raise UserError("missing required key", where=f"{adapter_path(name_or_path)}: method")
    return {"adapter": {"method": method, "options": raw}, "train": train}


def build_run_config(task: str, adapter: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Task YAML < adapter preset (its ``train`` block) < ``key=value`` overrides, validated once."""
    data = load_yaml(task_path(task))
    adapter_name = adapter or data.pop("adapter", None) or "full"
    if isinstance(adapter_name, dict):
        raise UserError("'adapter' in a task file names a preset", where=f"{task}: adapter", expected="a name")
    preset = load_adapter_preset(adapter_name)
    data = deep_merge(data, {"train": preset["train"]})
    data["adapter"] = preset["adapter"]
    data = apply_overrides(data, _route_adapter_overrides(overrides or []))
    cfg = from_dict(RunConfig, data)
    _check_plugins(cfg)
    return cfg


def _route_adapter_overrides(overrides: list[str]) -> list[str]:
    """``adapter.r=8`` is shorthand for ``adapter.options.r=8``."""
    out = []
    for text in overrides:
        if text.startswith("adapter.") and not text.startswith(("adapter.method=", "adapter.options.")):
            text = "adapter.options." + text[len("adapter."):]
        out.append(text)
    return out


def _check_plugins(cfg: RunConfig) -> None:
    """Validate the blocks owned by plugins (kind data schema, adapter options, loss, schedule)."""
    from .adapters import ADAPTERS
    from .kinds import KINDS
    from .training.losses import LOSSES
    from .training.schedules import SCHEDULES

    kind = KINDS.get(cfg.kind)
    cfg.data = kind.parse_data(cfg.data)
    cfg.model.options = kind.parse_model_options(cfg.model.options)
    method = ADAPTERS.get(cfg.adapter.method)
    cfg.adapter.options = method.parse_options(cfg.adapter.options)
    LOSSES.get(cfg.loss.name)
    SCHEDULES.get(cfg.train.schedule)
    kind.check_metrics(cfg.metrics)


# what eval/predict may change in a trained run's config: the data (root, subsets, decoding) and
# the machine, never what shapes the saved model
RUN_OVERRIDABLE = ("data", "train.eval_batch_size", "train.threads", "train.device", "train.mixed_precision",
                   "model.options.predict_score_thresh")


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Rebuild the config a run was trained with from its ``config.yaml`` snapshot; ``overrides``
    (``data.generate.num_beams=4``, ``data.root=...``) may change what ``RUN_OVERRIDABLE`` lists."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError("not a run folder (no config.yaml)", where=str(run_dir))
    for text in overrides or []:
        key = ".".join(parse_override(text)[0])
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RUN_OVERRIDABLE):
            raise UserError(f"'{text}' cannot change a trained run", where="command line",
                            expected="data.* (e.g. data.generate.num_beams=4, data.root=DIR), " + ", ".join(RUN_OVERRIDABLE[1:]))
    cfg = from_dict(RunConfig, apply_overrides(load_yaml(path), overrides or []))
    _check_plugins(cfg)
    return cfg
