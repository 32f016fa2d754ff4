"""``BenchConfig``: what a cross-domain benchmark runs, checked like every mmsft config block.

Built from the command line (``mmsft bench cross-domain``), a YAML file (``--config``) or code; the
per-method blocks (``options.target_mlm``, ``options.dann``) are checked by each method's own
``Options`` schema, so a typo names its key path and the closest valid key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import UserError, suggest

# smoke mode: every code path on the real tasks and backbone, in about a minute a cell
QUICK_OVERRIDES = ("data.max_train_samples=48", "train.epochs=1", "train.max_steps=6", "train.eval_every_steps=0")
QUICK_OPTIONS = {"target_mlm": {"max_steps": 4, "max_texts": 48}, "dann": {"max_texts": 48}}


@dataclass
class BenchConfig:
    tasks: list[str] = field(default_factory=list)  # sources and targets (a square matrix)
    sources: list[str] = field(default_factory=list)  # default: tasks
    targets: list[str] = field(default_factory=list)  # default: tasks
    adapters: list[str] = field(default_factory=lambda: ["lora"])  # presets (adapters/*.yaml); "a,b" stacks
    methods: list[str] = field(default_factory=lambda: ["source_only"])  # see mmsft.adaptation.METHODS
    seeds: int = 3  # train.seed = first_seed, first_seed + 1, ...
    first_seed: int = 42  # the tasks' own default seed: seed 1 of source_only is `mmsft train TASK --adapter A`
    label_map: dict[str, str] = field(default_factory=dict)  # task label (or TASK:label) -> the shared label name
    options: dict[str, Any] = field(default_factory=dict)  # per method: {target_mlm: {epochs: 1}, dann: {weight: 1.0}}
    overrides: list[str] = field(default_factory=list)  # task-config overrides for every fine-tune (train.epochs=2)
    threads: int = 1  # torch threads per cell (train.threads)
    jobs: int = 1  # cells run at once, each in its own process
    quick: bool = False  # smoke mode (QUICK_OVERRIDES, QUICK_OPTIONS)
    keep_models: bool = True  # keep each cell's saved model (new targets can then be scored without retraining)

    def validate(self, path: str) -> None:
        from ..adaptation.base import METHODS

        if not (self.tasks or (self.sources and self.targets)):
            raise UserError("name the tasks", where="tasks", expected="--tasks T1 T2 ..., or --sources and --targets")
        for name in ("adapters", "methods"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise UserError(f"{name} must be a non-empty list without repeats, got {values}", where=name)
        for method in self.methods:
            METHODS.get(method)
        for key in self.options:
            if key not in METHODS:
                raise UserError(f"options for unknown method '{key}'.{suggest(key, METHODS.names())}", where=f"options.{key}",
                                expected="one of: " + ", ".join(METHODS.names()))
        if self.seeds < 1 or self.jobs < 1 or self.threads < 0:
            raise UserError(f"need seeds >= 1, jobs >= 1, threads >= 0 (got {self.seeds}, {self.jobs}, {self.threads})", where=path or "bench")

    @property
    def source_list(self) -> list[str]:
        return list(dict.fromkeys(self.sources or self.tasks))

    @property
    def target_list(self) -> list[str]:
        return list(dict.fromkeys(self.targets or self.tasks))

    @property
    def seed_list(self) -> list[int]:
        return [self.first_seed + i for i in range(self.seeds)]

    @property
    def task_overrides(self) -> list[str]:
        return [*(QUICK_OVERRIDES if self.quick else ()), *self.overrides]

    def method_options(self, method: str) -> Any:
        """The method's parsed options (quick-mode defaults under the user's own)."""
        from ..adaptation.base import METHODS
        from ..config import deep_merge

        raw = deep_merge(QUICK_OPTIONS.get(method, {}) if self.quick else {}, self.options.get(method) or {})
        return METHODS.get(method).parse_options(raw, f"options.{method}")


def parse_bench(raw: dict, method_overrides: Optional[list[str]] = None) -> BenchConfig:
    """A checked ``BenchConfig`` from a dict; ``method_overrides`` (``dann.weight=0.5``) go into ``options``."""
    from ..config import apply_overrides, from_dict

    raw = apply_overrides(raw, [f"options.{o}" for o in method_overrides or []])
    cfg = from_dict(BenchConfig, raw)
    for method in cfg.options:
        cfg.method_options(method)  # each method checks its own block
    return cfg


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``key=value`` items -> (method options: ``dann.weight=0.5``, task overrides: ``train.epochs=2``)."""
    from ..adaptation.base import METHODS

    methods, tasks = [], []
    for item in items:
        head = item.split("=", 1)[0].split(".", 1)[0]
        (methods if head in METHODS else tasks).append(item)
    return methods, tasks
