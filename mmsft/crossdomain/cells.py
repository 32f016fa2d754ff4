"""One cell: the method's stage, the fine-tune, the scores -- each step resumable.

``OUT/cells/<adapter>/<method>/<source>[__<target>]/seed<k>/`` holds the run folder ``run/`` (written
by ``pipeline.train``: config, model, metrics, report) and ``cell.json``, written last, atomically:
its ``train_key`` fingerprints everything the trained model depends on, and each score carries the
key of the target data it was computed on.  A later call reuses what still matches: a finished cell
costs nothing; a fine-tune that crashed resumes from its last checkpoint (the runner's exact resume);
a trained model is scored only on the targets it has no current score for; a changed config
(another ``train.epochs``, other method options) retrains that cell.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .config import BenchConfig
from .plan import Cell, _config, cell_overrides

MACHINE_KEYS = ("output_dir",)  # config entries that do not change the result
# how the machine runs a cell, not what it trains (cpu_dropout: how dropout masks are drawn, the same distribution)
MACHINE_TRAIN_KEYS = ("threads", "device", "cpu_allocator", "cpu_dropout")
# train keys added after cells were first computed: at this default they change nothing, so they stay out of the
# key and cells computed before them (committed in a report) stay current
LATER_TRAIN_DEFAULTS = {"init_seed": None, "pad_to_multiple_of": 1}


@dataclass
class Runtime:
    """What a cell needs from the plan (picklable: workers get it in a fresh process)."""

    bench: BenchConfig
    out: Path
    shared: dict[str, list[str]]  # task name -> shared label names in id order
    specs: dict[str, str]  # task name -> registered name or YAML path
    texts: dict[str, Path]  # task name -> unlabelled train texts


def digest(data) -> str:
    return _sha(json.dumps(data, sort_keys=True, default=str))


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _result_key(cfg, method: str, stage_key: Optional[dict], out: Path) -> str:
    """The digest of what the trained model depends on.  Paths inside the work folder (the target texts,
    a stage's backbone) count relative to it: their names carry their content's digest, so a work folder
    moved or rebuilt elsewhere (a committed report seeding another machine's) keeps its cells current."""
    from ..config import to_dict

    data = to_dict(cfg)
    for key in MACHINE_KEYS:
        data.pop(key, None)
    for key in MACHINE_TRAIN_KEYS:
        data["train"].pop(key, None)
    for key, default in LATER_TRAIN_DEFAULTS.items():
        if data["train"].get(key, default) == default:
            data["train"].pop(key, None)
    text = json.dumps({"config": data, "method": method, "stage": stage_key}, sort_keys=True, default=str)
    return _sha(text.replace(str(out.resolve()), "$OUT").replace(str(out), "$OUT"))


def prepare_cell(cell: Cell, rt: Runtime):
    """(fine-tune config, method context, method, train key): all computed without doing any work."""
    from ..adaptation.base import METHODS, MethodContext

    method, base = METHODS.get(cell.method), cell_overrides(rt.bench, cell.seed)
    cfg = _config(rt.specs[cell.source], cell.adapter, base)
    texts = {role: rt.texts[task] for role, task in (("source", cell.source), ("target", cell.target)) if task in rt.texts}
    ctx = MethodContext(cfg, cell.source, cell.target, cell.seed, rt.bench.method_options(cell.method), texts, threads=rt.bench.threads)
    stage_key = method.stage_key(ctx)
    if stage_key is not None:
        seed_part = f"seed{cell.seed}" if stage_key.get("seed") == cell.seed else "shared"
        ctx.stage_dir = rt.out / "stages" / cell.method / method.stage_name(ctx) / f"{seed_part}-{digest(stage_key)}"
    cfg = _config(rt.specs[cell.source], cell.adapter, [*base, *method.overrides(ctx)])
    return cfg, ctx, method, _result_key(cfg, cell.method, stage_key, rt.out)


def _score_key(task: str, cell: Cell, rt: Runtime) -> tuple[str, object]:
    from ..config import to_dict

    target = _config(rt.specs[task], cell.adapter, rt.bench.task_overrides)
    return digest({"data": to_dict(target.data), "max_length": target.model.max_length, "labels": rt.shared[task],
                   "source_labels": rt.shared[cell.source]}), target


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cell_folder(cell: Cell, rt: Runtime) -> Path:
    return rt.out / "cells" / cell.folder


def run_cell(cell: Cell, rt: Runtime, log: Optional[str] = None) -> dict:
    """Bring ``cell`` up to date; returns its record (``cell.json``) with ``reused`` set when nothing ran.
    ``log``: a file that takes this cell's output (parallel workers)."""
    if log is None:
        return _run_cell(cell, rt)
    import contextlib

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        return _run_cell(cell, rt)


def _missing_scores(record: Optional[dict], score_keys: dict[str, str]) -> list[str]:
    """The eval tasks whose score in ``record`` is absent or was computed on other target data."""
    scores = (record or {}).get("scores", {})
    return [task for task, key in score_keys.items() if scores.get(task, {}).get("key") != key]


def finished_record(cell: Cell, rt: Runtime) -> Optional[dict]:
    """The cell's record when it is finished and still current (same train key, every score current), without
    running or removing anything; None otherwise.  Lets a resumed benchmark report every finished cell at once;
    a cell with no record costs one failed file read (no config is built)."""
    record = _read(cell_folder(cell, rt) / "cell.json")
    if record is None or record.get("train_key") != prepare_cell(cell, rt)[3]:
        return None
    if _missing_scores(record, {task: _score_key(task, cell, rt)[0] for task in cell.evals}):
        return None
    return {**record, "reused": True}


def _run_cell(cell: Cell, rt: Runtime) -> dict:
    from ..atomic import remove_tree, write_json
    from ..pipeline import load_run, train
    from .labels import label_order
    from .scoring import score_on_target

    tick = time.perf_counter()
    folder = cell_folder(cell, rt)
    cfg, ctx, method, key = prepare_cell(cell, rt)
    record = _read(folder / "cell.json")
    if record is not None and record.get("train_key") != key:  # the config changed: this model is stale
        print(f"[mmsft] {cell.label}: configuration changed, retraining", flush=True)
        remove_tree(folder)
        record = None
    wanted = {task: _score_key(task, cell, rt) for task in cell.evals}
    scores = dict((record or {}).get("scores", {}))
    missing = _missing_scores(record, {task: k for task, (k, _) in wanted.items()})
    if record is not None and not missing:
        return {**record, "reused": True}
    run_dir = folder / "run"
    trained = (run_dir / "metrics.json").is_file() and (run_dir / "model" / "mmsft.json").is_file()
    stage_seconds = (record or {}).get("stage_seconds", 0.0)
    if not trained:
        stage_seconds += method.run_stage(ctx)
        checkpoints = run_dir / "checkpoints"
        resume = checkpoints.is_dir() and any(checkpoints.glob("step-*"))
        if run_dir.exists() and not resume:
            remove_tree(run_dir)  # a start that crashed before its first checkpoint, or a model that was dropped
        cfg.output_dir = str(run_dir)
        train(cfg, run_dir, resume=resume)
    session = load_run(run_dir)
    for task in missing:
        score_key, target_cfg = wanted[task]
        order = label_order(rt.shared[cell.source], target_cfg.data.labels, rt.shared[task])
        scores[task] = {**score_on_target(session, target_cfg, order), "key": score_key}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    record = {"cell": {**asdict(cell), "evals": list(cell.evals)}, "train_key": key, "scores": scores,
              "source_test": {k: metrics["test"][k] for k in ("accuracy", "f1_macro") if k in metrics["test"]},
              "train_seconds": metrics["train_seconds"], "stage_seconds": round(stage_seconds, 1),
              "wall_seconds": round((record or {}).get("wall_seconds", 0.0) + time.perf_counter() - tick, 1),
              "stage": str(ctx.stage_dir) if ctx.stage_dir else None, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_json(folder / "cell.json", record)
    if not rt.bench.keep_models:
        remove_tree(run_dir / "model")
    return {**record, "reused": False}
