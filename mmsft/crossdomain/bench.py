"""Running a planned benchmark: the unlabelled texts, every cell (one process, or ``jobs`` worker
processes with one core each), progress with time left, and the matrix rewritten after each cell (a
stopped benchmark leaves a valid partial matrix; rerunning the command resumes it).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from .cells import Runtime, cell_folder, finished_record, prepare_cell, run_cell
from .plan import Plan, _config, write_unlabelled
from .progress import Progress


def _texts(plan: Plan, out: Path) -> dict[str, Path]:
    """The unlabelled train texts of every task a method reads (sources and targets of adaptation cells)."""
    return {task: write_unlabelled(_config(plan.specs[task], plan.bench.adapters[0], plan.bench.task_overrides), out / "texts")
            for task in plan.text_tasks}


def _forget(plan: Plan, rt: Runtime) -> None:
    """``--fresh``: drop the planned cells and the stages they use (other cells in ``out`` stay)."""
    from ..atomic import remove_tree

    for cell in plan.cells:
        _, ctx, _, _ = prepare_cell(cell, rt)
        remove_tree(cell_folder(cell, rt))
        if ctx.stage_dir is not None:
            remove_tree(ctx.stage_dir)


def execute(plan: Plan, out: Path, fresh: bool = False, on_update: Optional[Callable[[list[dict]], None]] = None,
            run: bool = True) -> list[dict]:
    """Run (or reuse) every cell of ``plan`` under ``out``; returns their records.  ``on_update(records)``
    is called after each finished cell (the caller rewrites the matrix there).  ``run=False``: train
    nothing, return the cells already finished and current (the report of a partial run)."""
    out.mkdir(parents=True, exist_ok=True)
    rt = Runtime(plan.bench, out, plan.shared, plan.specs, {})
    if fresh:
        for path in (out / "texts").glob("*.jsonl"):
            path.unlink()
    rt.texts = _texts(plan, out)
    if fresh:
        _forget(plan, rt)  # after the texts: a stage's folder name carries their digest
    progress = Progress(plan.cells, plan.bench.jobs)
    records: list[dict] = []

    def finished(cell, record) -> None:
        records.append(record)
        progress.finished(cell, record)
        state = "reused" if record.get("reused") else f"{record['wall_seconds']:.0f} s"
        print(f"[mmsft] {cell.label}: {state}; {progress.line()}", flush=True)
        if on_update is not None:
            on_update(records)

    todo = []
    for cell in plan.cells:  # finished cells first, so every matrix written on the way holds all of them
        record = finished_record(cell, rt)
        if record is None:
            todo.append(cell)
        else:
            finished(cell, record)
    if not run:
        todo = []  # report only: the finished cells above are all there is
    try:
        if plan.bench.jobs == 1:
            for cell in todo:
                finished(cell, run_cell(cell, rt))
        elif todo:
            _parallel(todo, plan.bench.jobs, rt, finished)
    finally:
        progress.close()
    return records


def seed_cells(report: Path, out: Path) -> int:
    """Write the cell records of a matrix JSON (``cells``) as ``out/cells/.../cell.json`` where none is
    there yet; returns how many.  A seeded cell is reused only while its ``train_key`` and score keys
    still match the plan (same configs, data and method options), otherwise it retrains: finished
    cells travel in a committed report from one machine to the next."""
    import json

    from ..atomic import write_json
    from .plan import Cell

    seeded = 0
    for record in json.loads(Path(report).read_text()).get("cells", []):
        cell = Cell(**{**record["cell"], "evals": tuple(record["cell"]["evals"])})
        path = out / "cells" / cell.folder / "cell.json"
        if not path.is_file():
            write_json(path, record)
            seeded += 1
    return seeded


def log_path(cell, rt: Runtime) -> Path:
    return rt.out / "logs" / (cell.folder.replace("/", "__") + ".txt")


def _parallel(cells: list, jobs: int, rt: Runtime, finished) -> None:
    """``jobs`` worker processes, a fresh one per cell (spawned: clean memory and thread settings);
    each cell's output goes to ``OUT/logs/<cell>.txt``.  The first failure stops the benchmark."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
        running = {pool.submit(run_cell, cell, rt, str(log_path(cell, rt))): cell for cell in cells}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                try:
                    record = future.result()
                except BaseException:
                    for other in running:
                        other.cancel()
                    print(f"[mmsft] {cell.label} failed; its output is in {log_path(cell, rt)}", file=sys.stderr)
                    raise
                finished(cell, record)


def header(command: str, plan: Plan) -> list[str]:
    """The Markdown header of a matrix written by the command: what ran, when, with what."""
    import platform

    import torch

    b = plan.bench
    return ["# Cross-domain transfer matrix", "", f"- Command: `{command}`", f"- Written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; {b.threads} thread(s) per cell, {b.jobs} cell(s) at once",
            f"- Cells: {len(plan.cells)} ({', '.join(b.adapters)} x {', '.join(b.methods)} x {b.seeds} seed(s))"
            + ("; **quick smoke mode: tiny training, numbers mean nothing**" if b.quick else ""), ""]


def run_benchmark(bench, out: Path, fresh: bool = False, command: str = "mmsft bench cross-domain",
                  stem: Optional[Path] = None) -> dict:
    """Plan (every check, nothing written), run or reuse the cells, write ``stem.{md,json,png}``
    (default ``out/matrix``) after every cell and at the end; returns the matrix data."""
    from .plan import make_plan
    from .report import write_matrix

    plan = make_plan(bench)
    stem = stem or out / "matrix"
    lines = header(command, plan)

    def update(records: list[dict]) -> dict:
        return write_matrix(records, stem, plan.targets, bench.methods, bench.adapters, lines, {"command": command})

    return update(execute(plan, out, fresh, update))
