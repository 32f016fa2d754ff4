"""``mmsft data augment``: write an augmented copy of a task's data with its own task YAML.

The task kind writes the copy (``TaskKind.write_augmented``: text classification writes
``train.jsonl`` with the new rows, the untouched ``validation.jsonl`` / ``test.jsonl`` and
``task.yaml``; detection a YOLO copy with new train images).  The copy is built in a temporary folder
and renamed when complete.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from ..config import parse_override
from ..errors import UserError
from ..registry import KINDS
from .base import parse_entry


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
    kind = KINDS.get(cfg.kind)
    out = (Path(out) if out else paths.runs_dir() / f"augment-{cfg.name}-{method}").expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("output exists and is not an empty folder", where=str(out), expected="a new folder (--out)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stats = kind.write_augmented(cfg, raw, entry, tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out, stats
