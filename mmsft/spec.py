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
    name: str = "cross_entropy"  # see mmsft.training.losses (LOSSES)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weights: Optional[Literal["balanced"]] = None

    def validate(self, path: str) -> None:
        if not 0 <= self.label_smoothing < 1 or self.focal_gamma < 0:
            raise UserError(f"label_smoothing must be in [0, 1) and focal_gamma >= 0, got {self.label_smoothing} and {self.focal_gamma}",
                            where=path)


@dataclass
class EarlyStoppingSpec:
    metric: Optional[str] = None  # a validation metric of the task (checked); default: the first head's first metric
    mode: Literal["auto", "max", "min"] = "auto"  # auto: max, or min for a loss
    patience: int = 0  # evaluations without improvement before stopping; 0 = off
    min_delta: float = 0.0
    restore_best: bool = True

    def validate(self, path: str) -> None:
        _at_least(self, path, patience=0, min_delta=0)


def _at_least(obj, path: str, **bounds) -> None:
    """Each named field >= its bound (None values pass: they mean "off")."""
    for name, low in bounds.items():
        value = getattr(obj, name)
        if value is not None and value < low:
            raise UserError(f"{name} must be >= {low}, got {value}", where=f"{path}.{name}" if path else name)


def _positive(obj, path: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise UserError(f"{name} must be > 0, got {value}", where=f"{path}.{name}" if path else name)


@dataclass
class TrainSpec:
    epochs: float = 3.0
    max_steps: Optional[int] = None
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 5e-5
    head_lr: Optional[float] = None  # LR of the parts that start from scratch (heads, modules); default: lr
    layer_decay: float = 1.0  # < 1: block i of n trains at lr * layer_decay**(n - i) (1 = one LR for all)
    weight_decay: float = 0.01
    schedule: str = "linear"  # see mmsft.training.schedules (SCHEDULES)
    warmup_ratio: float = 0.06
    grad_accum: int = 1
    max_grad_norm: Optional[float] = 1.0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 42
    # seed of the weights a run creates (heads, modules, LoRA A); default: seed.  Soup ingredients share it, so
    # their heads start alike and only data order and dropout differ (Wortsman et al. 2022 fine-tune from one init)
    init_seed: Optional[int] = None
    eval_every_steps: int = 0  # 0 = evaluate at each epoch end
    save_every_steps: int = 0  # 0 = checkpoint only at epoch ends
    keep_checkpoints: int = 1
    group_by_length: bool = True
    sampler: Literal["length", "class_balanced", "cluster_balanced"] = "length"  # see mmsft.training.sampling
    log_every_steps: int = 10
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    cpu_allocator: Literal["keep", "system", "release"] = "keep"  # keep: reuse freed memory (speed); release: RSS follows live tensors (see mmsft.training.cpu_memory)
    # fast: on a CPU, dropout masks (hidden and attention) cut from 64-bit random words, one byte per element
    # (mmsft.models.dropout, mmsft.models.attention); torch: nn.Dropout's and sdpa's bernoulli_ masks
    cpu_dropout: Literal["fast", "torch"] = "fast"
    # text-classification batches padded up to a multiple of this length (1: to the longest row): fewer distinct
    # shapes, so fewer kernels built (oneDNN on a CPU, tensor cores on a GPU like multiples of 8), for padded compute
    pad_to_multiple_of: int = 1
    cache_features: bool = True  # frozen deterministic backbone: encode once, train the heads
    gradient_checkpointing: bool = False  # recompute each block in backward: SmolLM2 LoRA 0.42x the memory, 1.4x the step
    # a NaN / inf loss or gradient (not an fp16 overflow, which accelerate's grad scaler handles): stop the run
    # with the step number, keeping the last good checkpoint, or skip that optimizer step (counted, logged)
    nonfinite: Literal["stop", "skip"] = "stop"
    callbacks: list[Any] = field(default_factory=list)  # [{name: ema, decay: 0.999}]: see mmsft.training.callbacks
    report_to: list[Literal["tensorboard", "mlflow", "jsonl"]] = field(default_factory=list)  # experiment trackers (mmsft.training.trackers); off by default
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)

    def validate(self, path: str) -> None:
        _positive(self, path, "epochs", "lr", "head_lr", "max_grad_norm", "max_steps")
        _at_least(self, path, batch_size=1, eval_batch_size=1, grad_accum=1, keep_checkpoints=1, log_every_steps=1,
                  weight_decay=0, eval_every_steps=0, save_every_steps=0, threads=0, pad_to_multiple_of=1)
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}", where=f"{path}.warmup_ratio")
        if not 0 < self.layer_decay <= 1:
            raise UserError(f"layer_decay must be in (0, 1], got {self.layer_decay}", where=f"{path}.layer_decay",
                            expected="e.g. 0.8 (1 = no decay)")


@dataclass
class HeadSpec:
    """One named head (``model.heads.<name>``): its type, options, loss, metrics and loss weight."""

    type: str  # see HEADS: classification, lm, fcos, retinanet, ssdlite, fasterrcnn
    options: Any = field(default_factory=dict)  # checked by the head type's own schema
    loss: Optional[LossSpec] = None  # default: the task's ``loss``
    metrics: Optional[list[str]] = None  # default: the task's ``metrics``
    weight: float = 1.0  # this head's share of the training loss

    def validate(self, path: str) -> None:
        _at_least(self, path, weight=0)


@dataclass
class ModuleSpec:
    """One module between backbone and heads (``model.modules[i]``)."""

    type: str  # see MODULES: bottleneck_adapter, ...
    name: Optional[str] = None  # default: the type
    options: Any = field(default_factory=dict)  # checked by the module type's own schema


@dataclass
class ModelSpec:
    backbone: str = "minilm-l6"
    max_length: int = 128
    heads: dict[str, HeadSpec] = field(default_factory=dict)  # default: the task kind's own head
    modules: list[ModuleSpec] = field(default_factory=list)
    towers: dict[str, str] = field(default_factory=dict)  # other backbones by name, e.g. {image: mobilenet-v2} (kinds that take them)

    def validate(self, path: str) -> None:
        _at_least(self, path, max_length=1)


@dataclass
class AdapterSpec:
    method: str = "full"  # see ADAPTERS: full, lora, frozen
    target: str = "backbone"
    options: Any = field(default_factory=dict)  # checked by the method's own schema
    task: Optional[str] = None  # multi-task runs: active only on this member's batches, evaluation and predictions


@dataclass
class RunConfig:
    name: str
    kind: str
    data: Any
    domain: str = "general"
    description: str = ""
    model: ModelSpec = field(default_factory=ModelSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "f1_macro"])
    train: TrainSpec = field(default_factory=TrainSpec)
    adapters: dict[str, AdapterSpec] = field(default_factory=lambda: {"full": AdapterSpec()})
    objective: dict[str, Any] = field(default_factory=lambda: {"name": "single"})
    knowledge: Any = None  # a knowledge base used at training and inference: mmsft.knowledge.config.KnowledgeSpec
    output_dir: Optional[str] = None

    @property
    def adapter_label(self) -> str:
        """The adapters' names joined by '+' (run folder names, reports)."""
        return "+".join(self.adapters)

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


def load_adapter_preset(name_or_path: str) -> tuple[str, dict, dict]:
    """Adapter YAML: ``method``, optional ``target`` and ``train`` overrides, the rest are method
    options -> (adapter name, adapter spec, train overrides)."""
    path = adapter_path(name_or_path)
    raw = dict(load_yaml(path))
    train = raw.pop("train", {}) or {}
    method = raw.pop("method", None)
    if method is None:
        raise UserError("missing required key", where=f"{path}: method")
    target = raw.pop("target", "backbone")
    return path.stem, {"method": method, "target": target, "options": raw}, train


def _adapter_names(adapter) -> list[str]:
    """``lora`` / ``frozen_top2,lora`` / ``[frozen_top2, lora]`` -> names."""
    if isinstance(adapter, str):
        return [a.strip() for a in adapter.split(",") if a.strip()]
    if isinstance(adapter, (list, tuple)) and all(isinstance(a, str) for a in adapter):
        return list(adapter)
    raise UserError("'adapter' names a preset or a list of presets", where="adapter", expected="a name, or [name, name]")


def build_run_config(task: str, adapter=None, overrides: list[str] | None = None) -> RunConfig:
    """Task YAML < adapter presets (their ``train`` blocks, in order) < ``key=value`` overrides, validated once."""
    data = load_yaml(task_path(task))
    declared = data.pop("adapters", None)  # the task's own stack ({name: {method, target, options, task}})
    if declared is not None and "adapter" in data:
        raise UserError("a task names either adapter presets ('adapter') or its own stack ('adapters'), not both",
                        where=str(task_path(task)), expected="one of the two keys")
    if (declared is not None and not isinstance(declared, dict)) or declared == {}:
        raise UserError("'adapters' is not a mapping of adapter names to specs", where=f"{task_path(task)}: adapters",
                        expected="adapters: {shared: {method: lora}}")
    names = [] if declared is not None and not adapter else _adapter_names(adapter or data.pop("adapter", None) or "full")
    data.pop("adapter", None)
    adapters = {} if names else declared  # --adapter on the command line replaces the task's own stack
    for preset in names:
        name, spec, train = load_adapter_preset(preset)
        if name in adapters:
            raise UserError(f"adapter '{name}' is listed twice", where="adapter", expected="distinct presets")
        adapters[name] = spec
        data = deep_merge(data, {"train": train})
    data["adapters"] = adapters
    _default_heads(data)
    data = apply_overrides(data, route_overrides(overrides or [], list(adapters)))
    cfg = from_dict(RunConfig, data)
    check_plugins(cfg)
    return cfg


def _default_heads(data: dict) -> None:
    """A task YAML without ``model.heads`` gets its kind's default head, so overrides can reach into it."""
    from .registry import KINDS

    if not isinstance(data.get("model", {}), dict) or not isinstance(data.get("kind"), str) or data["kind"] not in KINDS:
        return  # the schema check reports these
    model = data.setdefault("model", {})
    if not model.get("heads"):
        model["heads"] = KINDS.get(data["kind"]).default_heads()


_FIELDS = {"adapters": ("method", "target", "options", "task"), "heads": ("type", "options", "loss", "metrics", "weight")}


def route_overrides(overrides: list[str], adapter_names: list[str]) -> list[str]:
    """Shorthands: ``adapter.r=8`` is ``adapters.<the one adapter>.options.r=8``; ``adapters.lora.r=8`` and
    ``model.heads.<name>.dropout=0`` put a key that is not a spec field into ``options``."""
    out = []
    for text in overrides:
        key, _, value = text.partition("=")
        parts = key.strip().split(".")
        if parts[0] == "adapter" and len(parts) > 1:
            if len(adapter_names) != 1:
                raise UserError(f"'{key}' is ambiguous with adapters {adapter_names}", where="command line",
                                expected="adapters.<name>.options." + ".".join(parts[1:]))
            parts = ["adapters", adapter_names[0], *parts[1:]]
        if parts[0] == "adapters" and len(parts) > 2 and parts[2] not in _FIELDS["adapters"]:
            parts = [*parts[:2], "options", *parts[2:]]
        if parts[:2] == ["model", "heads"] and len(parts) > 3 and parts[3] not in _FIELDS["heads"]:
            parts = [*parts[:3], "options", *parts[3:]]
        out.append(".".join(parts) + ("=" + value if _ else ""))
    return out


def check_plugins(cfg: RunConfig) -> None:
    """Validate every block owned by a plug-in (kind data schema, heads, modules, adapters, objective,
    callbacks, loss, schedule) and every name the config refers to, before anything is built."""
    from .adapters.stack import check_stack
    from .config import from_dict as parse
    from .knowledge.config import check_knowledge
    from .registry import ADAPTERS, HEADS, KINDS, LOSSES, MODULES, OBJECTIVES, SCHEDULES
    from .training.callbacks import parse_callbacks

    kind = KINDS.get(cfg.kind)
    cfg.data = kind.parse_data(cfg.data)
    kind.check_heads(cfg)
    if cfg.train.pad_to_multiple_of > 1 and not kind.pads_to_multiple:
        raise UserError(f"a {kind.name} task pads its batches its own way", where="train.pad_to_multiple_of",
                        expected="1 (text-classification tasks take a multiple)")
    for name in cfg.model.towers:
        if name not in kind.tower_families:
            raise UserError(f"a {kind.name} task takes no tower '{name}'", where=f"model.towers.{name}",
                            expected="one of: " + (", ".join(kind.tower_families) or "(none)"))
    for i, module in enumerate(cfg.model.modules):
        cls = MODULES.get(module.type)
        module.options = module.options if isinstance(module.options, cls.Options) else parse(cls.Options, module.options or {}, f"model.modules[{i}].options")
    if not cfg.adapters:
        raise UserError("a run needs at least one adapter", where="adapters", expected="e.g. full, lora or frozen")
    for name, spec in cfg.adapters.items():
        spec.options = ADAPTERS.get(spec.method).parse_options(spec.options, f"adapters.{name}.options")
    check_stack(cfg.adapters)
    kind.check_adapter_tasks(cfg)
    if not isinstance(cfg.objective or {}, dict):
        raise UserError("objective is not a mapping", where="objective", expected="{name: single | multitask | ..., options}")
    objective = dict(cfg.objective or {})
    OBJECTIVES.get(objective.pop("name", "single")).parse_options(objective)
    parse_callbacks(cfg.train.callbacks)
    LOSSES.get(cfg.loss.name)
    SCHEDULES.get(cfg.train.schedule)
    check_knowledge(cfg, kind)
    _resolve_early_stopping(cfg.train.early_stopping, kind.validation_keys(cfg), kind.key_direction)


def check_heads(cfg: RunConfig, kind) -> None:
    """``model.heads`` (the kind's default head when empty): types fit the kind, options parsed by each
    head type's schema, losses and metrics known and fitting (``TaskKind.check_heads`` calls it)."""
    from .config import from_dict as parse
    from .registry import HEADS, LOSSES

    if not cfg.model.heads:
        cfg.model.heads = {name: parse(HeadSpec, raw, f"model.heads.{name}") for name, raw in kind.default_heads().items()}
    for name, head in cfg.model.heads.items():
        where = f"model.heads.{name}"
        if head.type not in HEADS:
            HEADS.get(head.type)  # the unknown-name error with a suggestion
        if head.type not in kind.head_types:
            raise UserError(f"head type '{head.type}' does not fit a {kind.name} task", where=f"{where}.type",
                            expected="one of: " + ", ".join(kind.head_types))
        cls = HEADS.get(head.type)
        head.options = head.options if isinstance(head.options, cls.Options) else parse(cls.Options, head.options or {}, f"{where}.options")
        LOSSES.get((head.loss or cfg.loss).name)
        kind.check_metrics(head.metrics if head.metrics is not None else cfg.metrics, f"{where}.metrics" if head.metrics is not None else "metrics")


def _resolve_early_stopping(es: EarlyStoppingSpec, keys: list[str], key_direction) -> None:
    """The monitored metric must be one the task's validation reports; ``None`` / ``auto`` are resolved
    (and saved so in the run's config.yaml)."""
    if es.metric is None:
        es.metric = keys[0]
    if es.metric not in keys:
        raise UserError(f"'{es.metric}' is not a validation metric of this task.{suggest(es.metric, keys)}",
                        where="train.early_stopping.metric", expected="one of: " + ", ".join(keys))
    if es.mode == "auto":
        direction = key_direction(es.metric)
        if direction is None:
            raise UserError(f"'{es.metric}' has no better direction", where="train.early_stopping.mode", expected="max or min")
        es.mode = "max" if direction else "min"


# what eval/predict may change in a trained run's config: the data (root, subsets, decoding) and
# the machine, never what shapes the saved model (patterns: * is one key)
RUN_OVERRIDABLE = ("data", "train.eval_batch_size", "train.threads", "train.device", "train.mixed_precision",
                   "model.heads.*.options.predict_score_thresh")


def _overridable(key: str) -> bool:
    import fnmatch

    return any(key == allowed or key.startswith(allowed + ".") or fnmatch.fnmatchcase(key, allowed) for allowed in RUN_OVERRIDABLE)


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Rebuild the config a run was trained with from its ``config.yaml`` snapshot; ``overrides``
    (``data.generate.num_beams=4``, ``data.root=...``) may change what ``RUN_OVERRIDABLE`` lists."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError("not a run folder (no config.yaml)", where=str(run_dir))
    for text in overrides or []:
        key = ".".join(parse_override(text)[0])
        if not _overridable(key):
            raise UserError(f"'{text}' cannot change a trained run", where="command line",
                            expected="data.* (e.g. data.generate.num_beams=4, data.root=DIR), " + ", ".join(RUN_OVERRIDABLE[1:]))
    cfg = from_dict(RunConfig, apply_overrides(load_yaml(path), overrides or []))
    check_plugins(cfg)
    return cfg
