"""``mmsft data augment``: write an augmented copy of a task's data with its own task YAML.

Per task kind (``MATERIALISERS``): text classification writes ``train.jsonl`` (the task's train split
after its own cleaning, plus the new rows), ``validation.jsonl`` and ``test.jsonl`` (unchanged), and
``task.yaml`` pointing at them.  The copy is built in a temporary folder and renamed when complete.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, Optional

from ..config import parse_override, to_dict
from ..errors import UserError
from ..registry import Registry
from .base import AugmentEntry, parse_entry

MATERIALISERS: Registry[Callable] = Registry("augmentation writer")


def parse_options(items: list[str]) -> dict:
    """``p=0.2 vocabulary=all`` -> {"p": 0.2, "vocabulary": "all"} (values are YAML scalars)."""
    out = {}
    for text in items:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise UserError(f"method option '{text}' must be a plain key=value", where="command line", expected="key=value, e.g. p=0.2")
        out[keys[0]] = value
    return out


def materialise(task: str, method: str, out: Optional[Path], factor: float = 1.0, seed: int = 0,
                options: list[str] = (), task_overrides: list[str] = ()) -> tuple[Path, dict]:
    from .. import paths
    from ..spec import build_run_config

    cfg = build_run_config(task, None, list(task_overrides))
    raw = {"method": method, "factor": factor, "seed": seed, **parse_options(list(options))}
    entry = parse_entry(raw, cfg.kind, f"--method {method}")
    writer = MATERIALISERS.get(cfg.kind) if cfg.kind in MATERIALISERS else None
    if writer is None:
        raise UserError(f"`data augment` cannot write task kind '{cfg.kind}' yet", expected="one of: " + ", ".join(MATERIALISERS.names()))
    out = (Path(out) if out else paths.runs_dir() / f"augment-{cfg.name}-{method}").expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("output exists and is not an empty folder", where=str(out), expected="a new folder (--out)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stats = writer(cfg, raw, entry, tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out, stats


@MATERIALISERS.register("text_classification")
def write_text_classification(cfg, raw: dict, entry: AugmentEntry, tmp: Path, out: Path) -> dict:
    import yaml

    from ..kinds.text_classification import build_splits

    spec = dataclasses.replace(cfg.data, augment=[raw])
    splits, stats = build_splits(spec)
    labels = spec.labels
    n_original = len(splits["train"]) - sum(v["added"] for v in stats["augment"].values())
    for name, rows in splits.items():
        with (tmp / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                record = {"text": row["text"], "label": labels[row["label"]], "source": row["source"]}
                if name == "train" and i >= n_original:
                    record["augmented"] = entry.method
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    task = to_dict(cfg)
    task.pop("adapter", None)
    task.pop("output_dir", None)
    task["name"] = f"{cfg.name}_{entry.method}"
    task["description"] = (f"{cfg.description.strip()} Augmented copy written by `mmsft data augment {cfg.name} --method {entry.method}`: "
                           f"train = the original train split plus {stats['augment'][f'0:{entry.method}']['added']} new rows; "
                           "validation and test are the original splits, untouched.")
    task["data"].update({"format": "jsonl", "root": str(out), "files": {k: f"{k}.jsonl" for k in splits},
                         "text_column": "text", "label_column": "label", "label_map": {}, "encoding": "utf-8",
                         "max_train_samples": None, "augment": []})
    (tmp / "task.yaml").write_text(f"# mmsft train {out / 'task.yaml'} --adapter lora\n" + yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    counts = {name: len(rows) for name, rows in splits.items()}
    return {"rows": counts, "original_train_rows": n_original, "augment": stats["augment"]}
