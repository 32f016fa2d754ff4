"""Planning a benchmark: every config checked, the label sets matched, the cells listed -- before any
training or any output, so a bad name, key or label set stops with one message and nothing written.

A cell is one fine-tune.  ``source_only`` trains one model per (source, adapter, seed) and scores it on
its own test split (the in-domain diagonal) and on every target's; an adaptation method trains one
model per (source, target, adapter, seed) and scores it on that target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import UserError
from .config import BenchConfig
from .labels import shared_labels


@dataclass(frozen=True)
class Cell:
    source: str
    target: Optional[str]  # None: the model does not depend on a target (source_only)
    method: str
    adapter: str
    seed: int
    evals: tuple[str, ...]  # tasks whose test split the model is scored on

    @property
    def folder(self) -> str:
        pair = self.source + (f"__{self.target}" if self.target else "")
        return f"{self.adapter.replace(',', '+')}/{self.method}/{pair}/seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.adapter} {self.method} {self.source} -> {self.target or ', '.join(self.evals)} (seed {self.seed})"


@dataclass
class Plan:
    bench: BenchConfig
    cells: list[Cell]
    shared: dict[str, list[str]]  # task name -> its labels in id order, as shared names
    specs: dict[str, str]  # task name -> what names it for build_run_config (a registered name or a YAML path)
    text_tasks: list[str] = field(default_factory=list)  # tasks whose unlabelled train texts a method reads
    targets: list[str] = field(default_factory=list)  # target task names (the matrix columns)


def cell_overrides(bench: BenchConfig, seed: int) -> list[str]:
    return [*bench.task_overrides, f"train.seed={seed}", f"train.threads={bench.threads}"]


def _config(task: str, adapter: str, overrides: list[str]):
    from ..spec import build_run_config

    try:
        return build_run_config(task, adapter, overrides)
    except UserError as exc:
        raise UserError(exc.message, where=f"{task} / {adapter}" + (f": {exc.where}" if exc.where else ""), expected=exc.expected) from None


def make_plan(bench: BenchConfig) -> Plan:
    from ..adaptation.base import METHODS

    specs: dict[str, str] = {}
    cfgs = {}
    for given in dict.fromkeys([*bench.source_list, *bench.target_list]):
        for adapter in bench.adapters:
            cfg = _config(given, adapter, cell_overrides(bench, bench.first_seed))
            if specs.setdefault(cfg.name, given) != given:
                raise UserError(f"two tasks are named '{cfg.name}': {specs[cfg.name]} and {given}", where="tasks", expected="distinct task names")
            cfgs[(cfg.name, adapter)] = cfg
    name_of = {given: name for name, given in specs.items()}
    sources = [name_of[t] for t in dict.fromkeys(bench.source_list)]
    targets = [name_of[t] for t in dict.fromkeys(bench.target_list)]
    tasks = list(dict.fromkeys([*sources, *targets]))
    shared = shared_labels({task: cfgs[(task, bench.adapters[0])] for task in tasks}, bench.label_map)
    cells, text_tasks = [], []
    for adapter in bench.adapters:
        for method in bench.methods:
            for source in sources:
                METHODS.get(method).check(cfgs[(source, adapter)], bench.method_options(method))
    # seed-major: a benchmark stopped part-way leaves whole one-seed matrices, not three seeds of a few rows; within a
    # seed the baselines first, then pair by pair every adaptation method, so a partial matrix already compares them
    per_source = [m for m in bench.methods if not METHODS.get(m).needs_target]
    per_pair = [m for m in bench.methods if METHODS.get(m).needs_target]
    for seed in bench.seed_list:
        for adapter in bench.adapters:
            cells += [Cell(source, None, method, adapter, seed, tuple(dict.fromkeys([source, *targets])))
                      for method in per_source for source in sources]
            for source, target in [(s, t) for s in sources for t in targets if t != s]:
                cells += [Cell(source, target, method, adapter, seed, (target,)) for method in per_pair]
                text_tasks += [source, target] if per_pair else []
    if not cells:
        raise UserError("nothing to run: every target is its own source", where="tasks", expected="at least two tasks")
    return Plan(bench, cells, shared, specs, list(dict.fromkeys(text_tasks)), targets)


def merge_plans(plans: list[Plan]) -> Plan:
    """One plan from several (the benchmark's suites): a cell listed twice is run once and scored on
    the union of its targets.  The suites must share their overrides and method options."""
    first = plans[0]
    cells: dict[tuple, Cell] = {}
    for plan in plans:
        same = (plan.bench.task_overrides, plan.bench.options, plan.bench.label_map, plan.bench.quick)
        if same != (first.bench.task_overrides, first.bench.options, first.bench.label_map, first.bench.quick):
            raise UserError("merged benchmark suites must share overrides, method options, label_map and quick mode", where="suites")
        for cell in plan.cells:
            key = (cell.source, cell.target, cell.method, cell.adapter, cell.seed)
            old = cells.get(key)
            cells[key] = cell if old is None else Cell(*key, tuple(dict.fromkeys([*old.evals, *cell.evals])))
    shared = {k: v for plan in plans for k, v in plan.shared.items()}
    specs = {k: v for plan in plans for k, v in plan.specs.items()}
    if len({tuple(sorted(v)) for v in shared.values()}) > 1:
        raise UserError(f"the suites' label sets differ: {shared}", where="suites", expected="one shared label set")
    texts = list(dict.fromkeys(t for plan in plans for t in plan.text_tasks))
    targets = list(dict.fromkeys(t for plan in plans for t in plan.targets))
    return Plan(first.bench, list(cells.values()), shared, specs, texts, targets)


def unlabelled_texts(cfg) -> list[str]:
    """The task's training split, texts only -- the one place a domain's data is read for adaptation.
    The labels stay behind: only the ``text`` column is taken (the split itself is the task's own,
    so a target's test rows never enter)."""
    from ..registry import KINDS

    return list(KINDS.get(cfg.kind).load_data(cfg)["train"]["text"])


def write_unlabelled(cfg, folder: Path) -> Path:
    """``folder/<task>-<data fingerprint>.jsonl`` of ``unlabelled_texts`` (written once, reused)."""
    from ..adaptation.texts import write_texts
    from ..config import to_dict
    from ..data.cache import fingerprint

    path = folder / f"{cfg.name}-{fingerprint(to_dict(cfg.data))}.jsonl"
    if not path.is_file():
        write_texts(path, unlabelled_texts(cfg))
    return path
