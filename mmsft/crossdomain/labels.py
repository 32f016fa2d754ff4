"""The label-set check: every task of a benchmark must predict the same classes, by name.

A model trained on a source scores a target only if they share their label set: the same label
names, in any order (ids are matched by name), or names made equal by a stated ``label_map``
(``{neg: negative, "toy:pos": positive}``: a task's label, or ``TASK:label`` for one task only, ->
the shared name).  The check runs before anything trains and names both sets on a mismatch.
"""
from __future__ import annotations

from ..errors import UserError, suggest


def shared_labels(cfgs: dict, label_map: dict[str, str]) -> dict[str, list[str]]:
    """{task: its labels in id order, as shared names}; ``UserError`` when the sets differ."""
    used: set[str] = set()
    shared: dict[str, list[str]] = {}
    for task, cfg in cfgs.items():
        labels = getattr(cfg.data, "labels", None)
        if not isinstance(labels, list):
            raise UserError(f"task kind '{cfg.kind}' has no label list: cross-domain transfer compares classifiers", where=task,
                            expected="classification tasks")
        names = []
        for label in labels:
            for key in (f"{task}:{label}", label):
                if key in label_map:
                    used.add(key)
                    names.append(label_map[key])
                    break
            else:
                names.append(label)
        if len(set(names)) != len(names):
            raise UserError(f"label_map makes two labels of '{task}' the same: {labels} -> {names}", where="label_map")
        shared[task] = names
    unused = sorted(set(label_map) - used)
    if unused:
        known = sorted({lab for cfg in cfgs.values() for lab in cfg.data.labels} | {f"{t}:{lab}" for t, c in cfgs.items() for lab in c.data.labels})
        raise UserError(f"label_map key '{unused[0]}' is no task's label.{suggest(unused[0], known)}", where=f"label_map.{unused[0]}",
                        expected="a label of one of the tasks, or TASK:label")
    first, *rest = shared
    for task in rest:
        if set(shared[task]) != set(shared[first]):
            missing = sorted(set(shared[first]) ^ set(shared[task]))
            raise UserError(f"label sets differ: '{first}' has {sorted(shared[first])}, '{task}' has {sorted(shared[task])} "
                            f"(not shared: {missing})", where="tasks",
                            expected="tasks with the same label names, or a label_map onto shared names (--label-map neg=negative pos=positive)")
    return shared


def label_order(source_shared: list[str], target_labels: list[str], target_shared: list[str]) -> list[str]:
    """The target's own label names ordered by the source model's class ids (so that a target row's
    label id is the id the source model predicts for that class)."""
    by_shared = dict(zip(target_shared, target_labels))
    return [by_shared[name] for name in source_shared]
