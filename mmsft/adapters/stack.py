"""Applying a run's adapters (an ordered, named stack), saving and loading each, merging them.

The stack trains exactly the union of what its adapters return from ``apply``, plus the heads and
every trainable module; a backbone of which nothing trains is kept in eval mode (exact, cacheable
features).  An adapter's ``target`` is ``backbone`` or ``towers.<name>`` (a model's other backbone,
e.g. the image tower beside a text backbone); a tower no adapter targets stays frozen.  Each adapter
saves into ``model/adapters/<name>/``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..registry import ADAPTERS

def _targets(model) -> dict:
    return {"backbone": model.backbone, **{f"towers.{n}": t for n, t in model.towers.items()}}


def _target(model, spec, name: str):
    targets = _targets(model)
    if spec.target not in targets:
        raise UserError(f"unknown adapter target '{spec.target}'", where=f"adapters.{name}.target", expected="one of: " + ", ".join(targets))
    return targets[spec.target]


def check_stack(specs: dict) -> None:
    """A ``full`` adapter already trains every weight of its target: stacking more on it is a mistake."""
    for target in {s.target for s in specs.values()}:
        on_target = [n for n, s in specs.items() if s.target == target]
        full = [n for n in on_target if specs[n].method == "full"]
        if full and len(on_target) > 1:
            raise UserError(f"adapter '{full[0]}' (full) trains every weight of {target}; it cannot be stacked with "
                            f"{[n for n in on_target if n != full[0]]}", where="adapters", expected="full alone, or other methods")


def apply_adapters(model, specs: dict) -> None:
    """Apply every adapter in order, then set ``requires_grad`` to the union of what they train."""
    check_stack(specs)
    trained, owned = {}, {}  # owned: task -> ids of what its task-specific adapters added
    for name, spec in specs.items():
        for param in ADAPTERS.get(spec.method).apply(_target(model, spec, name), spec.options, name):
            trained[id(param)] = param
            if spec.task is not None:
                owned.setdefault(spec.task, set()).add(id(param))
    for target in _targets(model).values():
        for param in target.parameters():
            param.requires_grad_(id(param) in trained)
    model.heads.requires_grad_(True)
    for name, module in model.inserts.items():
        module.requires_grad_(module.trainable)
        if not module.trainable:
            model.keep_eval(f"inserts.{name}")
    for name, target in _targets(model).items():
        if not any(p.requires_grad for p in target.parameters()):
            model.keep_eval(name)  # deterministic features: no dropout, frozen BN statistics
    names = {id(p): n for n, p in model.named_parameters()} if owned else {}
    model.set_adapter_router(task_router(model, specs, {t: sorted(names[i] for i in ids) for t, ids in owned.items()}))
    model.attach()  # modules onto the (possibly wrapped) blocks


def task_router(model, specs: dict, owned: dict[str, list[str]]):
    """``route(task)`` for a stack with task-specific adapters (``task: NAME``): on each target, the shared
    adapters plus those of ``task`` are active (the shared ones alone for None); None when no adapter has a task.
    ``route.owned``: task -> names of the parameters its own adapters added (per-task early stopping restores them)."""
    if not any(s.task is not None for s in specs.values()):
        return None
    plan = {}  # (target, method) -> [(adapter name, task)]
    for name, spec in specs.items():
        plan.setdefault((spec.target, spec.method), []).append((name, spec.task))

    def route(task) -> None:
        for (target, method), adapters in plan.items():
            active = [name for name, only in adapters if only is None or only == task]
            method_ = ADAPTERS.get(method)
            if method_.switchable:
                method_.activate(_targets(model)[target], active)
    route.owned = owned
    return route


def trains_base_weights(specs: dict) -> bool:
    return any(ADAPTERS.get(s.method).trains_base_weights for s in specs.values())


def save_adapters(model, specs: dict, folder: Path) -> None:
    for name, spec in specs.items():
        ADAPTERS.get(spec.method).save(_target(model, spec, name), folder / name, spec.options, name)


def load_adapters(model, specs: dict, folder: Path) -> None:
    """Apply the stack to a freshly built model, then load what each adapter saved."""
    apply_adapters(model, specs)
    for name, spec in specs.items():
        ADAPTERS.get(spec.method).load(_target(model, spec, name), folder / name, spec.options, name)
    model.attach()
    model.use_task(None)


def merge_adapters(model, specs: dict) -> list[str]:
    """Fold every mergeable adapter into the base weights; returns the names merged."""
    per_task = [name for name, spec in specs.items() if spec.task is not None]
    if per_task:
        raise UserError(f"adapters {per_task} serve one task each: folding them into one backbone would apply them to every task",
                        where="adapters", expected="a run whose adapters are all shared")
    merged = [name for name, spec in specs.items() if ADAPTERS.get(spec.method).merge(_target(model, spec, name), spec.options, name)]
    model.attach()
    return merged
