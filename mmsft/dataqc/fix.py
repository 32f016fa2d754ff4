"""``--fix OUT``: a cleaned copy of a task's data, never touching the source files.

Policy (applied to clusters of exact or near duplicates, found as in the report):
1. Leakage: a cluster spanning several files keys is kept only in the highest-ranked one
   (test > validation > train / all); its rows in the other keys are dropped.  Test rows are never
   dropped for leaking: the evaluation set stays comparable.
2. Duplicates: inside that key, one row per cluster is kept (the first in file order).
3. Conflicts: when the cluster's rows there carry different labels, the strict-majority label is
   kept; without a strict majority every row of the cluster is dropped (the label is unknowable).
Label-noise suspects are NOT changed (they are suspects; review them with the ranked list).

Written by the task kind (``TaskKind.write_fixed``), always with ``OUT/fix.json`` (counts and every removed row with
its reason): text classification ``OUT/<key>.jsonl`` ({"text", "label"}) per files key and
``OUT/task.yaml`` (the same task on the cleaned files); generation the conversations as jsonl
``{"messages", fields}`` and ``task.yaml``; image classification an ImageFolder copy; detection a YOLO
copy (images copied, labels rewritten, ``data.yaml``).
"""
from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import UserError
from .duplicates import UnionFind
from .views import QCData

RANK = {"test": 0, "validation": 1, "train": 2, "all": 2}
POLICY = ("leakage: keep a duplicated item only in the highest-ranked files key (test > validation > train/all); "
          "duplicates (exact or near): keep the first; conflicting labels: keep the strict-majority label, else drop; "
          "label-noise suspects: unchanged")


def check_fix_target(out: Path, cfg=None) -> None:
    """OUT must be new (or an empty folder) and must not hold or be any source file."""
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("--fix output exists and is not an empty folder", where=str(out), expected="a new folder")
    if cfg is not None and getattr(cfg.data, "files", None) is not None:
        from ..paths import resolve_data_path

        root = resolve_data_path(cfg.data, "").resolve()
        if out == root or root.is_relative_to(out):
            raise UserError("--fix output would contain the source data", where=str(out), expected="a folder outside " + str(root))


def decide(data: QCData, groups: list[list[int]]) -> tuple[dict[int, str], dict[int, str]]:
    """(removed id -> reason, kept id -> new label when a majority vote changed it)."""
    uf = UnionFind(len(data.items))
    for ids in groups:
        for i in ids[1:]:
            uf.union(ids[0], i)
    removed, relabel = {}, {}
    for cluster in uf.groups():
        items = [data.items[i] for i in cluster]
        best = min(RANK.get(it.file_key, 2) for it in items)
        home = [it for it in items if RANK.get(it.file_key, 2) == best]
        for it in items:
            if RANK.get(it.file_key, 2) != best:
                removed[it.id] = f"leakage: duplicate of a row in files.{home[0].file_key} ({home[0].source})"
        labels = Counter(str(it.label) for it in home)
        top, count = labels.most_common(1)[0]
        if len(labels) > 1 and count * 2 <= len(home):
            for it in home:
                removed[it.id] = f"conflict without majority: labels {dict(labels)}"
            continue
        keep = next(it for it in home if str(it.label) == top)
        for it in home:
            if it.id != keep.id:
                removed[it.id] = ("conflict, minority label" if str(it.label) != top else "duplicate") + f": kept {keep.source}"
        if len(labels) > 1:
            relabel[keep.id] = top
    return removed, relabel


def write_fixed(cfg, data: QCData, results: dict, out: Path) -> Path:
    """Write the cleaned copy to ``out`` (built in a temp folder, renamed when complete)."""
    dup = results.get("duplicates")
    if dup is None:
        raise UserError("--fix needs the duplicates section", where="--skip", expected="duplicates not skipped")
    check_fix_target(out, cfg)
    out = out.expanduser().resolve()
    groups = dup["_groups"]["exact"] + dup["_groups"]["near"]
    removed, relabel = decide(data, groups)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from ..registry import KINDS

    KINDS.get(data.kind).write_fixed(cfg, data, removed, relabel, tmp, out)
    reasons = Counter(r.split(":")[0] for r in removed.values())
    summary = {"policy": POLICY, "rows_in": len(data.items), "rows_out": len(data.items) - len(removed),
               "removed": dict(reasons), "relabelled": len(relabel),
               "per_files_key": {k: {"in": sum(1 for it in data.items if it.file_key == k),
                                     "out": sum(1 for it in data.items if it.file_key == k and it.id not in removed)} for k in data.file_keys()},
               "removed_rows": [{"source": data.items[i].source, "file_key": data.items[i].file_key, "reason": r} for i, r in sorted(removed.items())],
               "relabelled_rows": [{"source": data.items[i].source, "label": lab} for i, lab in sorted(relabel.items())]}
    (tmp / "fix.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)
    return out


def write_jsonl(data: QCData, removed: dict, tmp: Path, record) -> None:
    """One ``<files key>.jsonl`` per files key with ``record(item)`` for every kept item."""
    rows = defaultdict(list)
    for it in data.items:
        if it.id not in removed:
            rows[it.file_key].append(record(it))
    for key in data.file_keys():
        if not rows[key]:
            raise UserError(f"cleaning leaves files.{key} empty", where=f"files.{key}")
        with (tmp / f"{key}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows[key]:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_task_yaml(cfg, data: QCData, tmp: Path, out: Path, data_keys: dict) -> None:
    """``task.yaml``: the same task on the cleaned jsonl files."""
    import yaml

    from ..config import to_dict

    spec = to_dict(cfg)
    for key in ("adapters", "output_dir"):
        spec.pop(key, None)
    spec["name"] = f"{cfg.name}_fixed"
    spec["description"] = " ".join(filter(None, [cfg.description.strip(), f"Cleaned copy written by `mmsft data check {cfg.name} --fix`: {POLICY}."]))
    spec["data"].update({"format": "jsonl", "root": str(out), "files": {k: f"{k}.jsonl" for k in data.file_keys()}, "encoding": "utf-8", **data_keys})
    text = f"# mmsft train {out / 'task.yaml'} --adapter lora\n" + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    (tmp / "task.yaml").write_text(text)
