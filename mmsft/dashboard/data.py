"""Run folders as the dashboard sees them: one summary per run, the training log, images and examples.

A run the user names (``runs compare RUN``) that is broken raises ``UserError``; a run found while listing
a folder is shown with the reason instead, so one torn run does not hide the others.
"""
from __future__ import annotations

import itertools
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ..config import dotted_keys
from ..errors import UserError
from ..training.logfile import json_records

MARKER = "config.yaml"  # the first file `train` (and every derived run) writes
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
FINISHED, UNFINISHED = "finished", "did not finish"
EXPECTED = "a run folder written by `mmsft train`, with config.yaml"


def _reason(exc: Exception) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def run_folder(path) -> Path:
    """``path`` if it is a run folder, else a one-line ``UserError``."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError("no such folder", where=str(folder), expected=EXPECTED)
    if not (folder / MARKER).is_file():
        raise UserError(f"not a run folder: no {MARKER}", where=str(folder), expected=EXPECTED)
    return folder


def _read_config(folder: Path) -> dict:
    path = folder / MARKER
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {MARKER}: {_reason(exc)}", where=str(path)) from None
    if not isinstance(cfg, dict):
        raise UserError(f"cannot read {MARKER}: not a mapping", where=str(path))
    return cfg


def _read_metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read metrics.json: {_reason(exc)}", where=str(path)) from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test", {}), dict):
        raise UserError("cannot read metrics.json: expected an object with a 'test' object", where=str(path))
    return metrics


def _date(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _peak_memory(metrics: dict):
    """``peak_memory_mb`` as the runner writes it, else any other ``peak*mem*`` number a run recorded."""
    if "peak_memory_mb" in metrics:
        return metrics["peak_memory_mb"]
    return next((v for k, v in metrics.items() if k.startswith("peak") and "mem" in k and _number(v)), None)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_run(path, strict: bool = True) -> dict:
    """The summary of one run: name, task, kind, adapter, status, test metrics, train time, peak memory, date."""
    folder = run_folder(path)
    summary = {"name": folder.name, "path": str(folder.resolve()), "task": "", "kind": "", "adapter": "", "backbone": "",
               "status": UNFINISHED, "test": {}, "train_seconds": None, "peak_memory_mb": None, "date": _date(folder / MARKER)}
    try:
        cfg, metrics = _read_config(folder), _read_metrics(folder)
    except UserError as exc:
        if strict:
            raise
        return {**summary, "status": f"unreadable: {exc.message}"}
    adapters, model = cfg.get("adapters"), cfg.get("model")
    summary.update(task=str(cfg.get("name", "")), kind=str(cfg.get("kind", "")),
                   adapter="+".join(adapters) if isinstance(adapters, dict) else "",
                   backbone=str(model.get("backbone", "")) if isinstance(model, dict) else "")
    if metrics is not None:
        summary.update(status=FINISHED, date=_date(folder / "metrics.json"),
                       test={k: v for k, v in (metrics.get("test") or {}).items() if _number(v) or isinstance(v, str)},
                       train_seconds=metrics.get("train_seconds"), peak_memory_mb=_peak_memory(metrics))
        summary.update({k: str(metrics[k]) for k in ("task", "adapter", "backbone") if metrics.get(k)})
        if metrics.get("derived_by"):
            summary["derived_by"] = str(metrics["derived_by"])
    return summary


def list_runs(root) -> list[dict]:
    """Every run folder directly inside ``root``, by name."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError("runs folder not found", where=str(base), expected="a folder of run folders: --root DIR or MMSFT_RUNS_DIR")
    return [read_run(p, strict=False) for p in sorted(base.iterdir(), key=lambda p: p.name)
            if p.is_dir() and (p / MARKER).is_file()]


def fmt(value) -> str:
    """A cell: numbers to 4 decimals without trailing zeros (4 digits below 0.001), None as '-'."""
    if value is None or value == "":
        return "-"
    if _number(value) and isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == 0 or abs(value) >= 1e-3 else f"{value:.4g}"
    return str(value)


def table(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the terminal, the JSON endpoint and the pages; metric columns in first-seen order."""
    metric_names = list(dict.fromkeys(k for run in runs for k in run["test"]))
    header = ["run", "task", "kind", "adapter", "status", *metric_names, "train s", "peak MB", "date"]
    rows = [[run["name"], run["task"], run["kind"], run["adapter"], run["status"],
             *(fmt(run["test"].get(m)) for m in metric_names), fmt(run["train_seconds"]), fmt(run["peak_memory_mb"]), run["date"]]
            for run in runs]
    return header, [[fmt(c) for c in row] for row in rows]


def _jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """Rows of a JSON-lines file (at most ``limit``); a torn or foreign line (a crash mid-write) is skipped."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return list(itertools.islice(json_records(fh), limit))
    except OSError:
        return []


def log_rows(folder: Path) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl split into train and eval rows."""
    rows = _jsonl(folder / "metrics.jsonl")
    return [r for r in rows if r.get("type") == "train"], [r for r in rows if r.get("type") == "eval"]


def numeric_keys(rows: list[dict]) -> list[str]:
    skip = {"type", "step", "epoch"}
    return list(dict.fromkeys(k for r in rows for k, v in r.items() if k not in skip and _number(v)))


def details(folder: Path, examples: int = 20) -> dict:
    """Everything a run page shows."""
    train, evals = log_rows(folder)
    try:
        config_text = (folder / MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        config_text = f"(cannot read: {_reason(exc)})"
    return {"summary": read_run(folder, strict=False), "config_text": config_text, "train": train, "eval": evals,
            "images": sorted((p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_TYPES and p.is_file()),
                             key=lambda n: (n != "curves.png", n)),
            "examples": _jsonl(folder / "test_predictions.jsonl", limit=examples)}


def flat_config(folder: Path) -> dict:
    """config.yaml as dotted keys, values as text (the compare page shows the keys whose values differ)."""
    try:
        cfg = _read_config(folder)
    except UserError:
        return {}
    return {key: str(value) for key, value in dotted_keys(cfg).items()}


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not name.startswith(".") and not any(c in name for c in "/\\\0")


def run_in_root(root: Path, name: str) -> Path | None:
    """The run folder ``name`` directly inside ``root`` (a linked run counts), or None: a name with a separator or
    '..' never is one."""
    if not _safe_name(name):
        return None
    folder = root / name
    try:
        return folder if (folder / MARKER).is_file() else None
    except OSError:
        return None


def run_file(root: Path, name: str, filename: str) -> Path | None:
    """An image file directly inside a run folder of ``root`` (resolved, so a symlink out is refused), or None."""
    folder = run_in_root(root, name)
    if folder is None or not _safe_name(filename) or Path(filename).suffix.lower() not in IMAGE_TYPES:
        return None
    path = folder / filename
    try:
        real = path.resolve()
        if real.parent != folder.resolve() or not real.is_file():
            return None
    except OSError:
        return None
    return real
