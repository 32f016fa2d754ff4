"""Overall progress of a benchmark: cells done, and the time left estimated from measured cells.

A cell's cost depends mostly on its method, adapter and source task (DANN runs the model twice per
step, ``target_mlm`` adds its MLM stage, ``frozen`` trains a head on cached features, SST-2's train
split is 40x a review domain's).  The estimate for a cell not yet run is the mean wall time of finished
cells of the same (method, adapter, source); failing that of the same (method, adapter) or
(adapter, source) scaled by the method's prior cost ratio; failing that the mean of all measured cells
scaled by both priors.  Cells finished in earlier sittings count (their ``cell.json`` keeps the wall
time), so a resumed benchmark knows its rate from the start.
"""
from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Optional

from .plan import Cell

METHOD_COST = {"source_only": 1.0, "dann": 2.0, "target_mlm": 2.0}  # priors, replaced by measurements
ADAPTER_COST = {"frozen": 0.15, "full": 1.3}


def fmt_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown until a cell finishes"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


class Progress:
    def __init__(self, cells: list[Cell], jobs: int = 1):
        from tqdm.auto import tqdm

        self.pending = {c.folder: c for c in cells}
        self.jobs = jobs
        self.measured: dict[str, list[float]] = defaultdict(list)
        self.total = len(cells)
        self.bar = tqdm(total=len(cells), desc="cells", unit="cell", mininterval=0, dynamic_ncols=True)

    def _classes(self, cell: Cell) -> list[tuple]:
        return [("mas", cell.method, cell.adapter, cell.source), ("ma", cell.method, cell.adapter), ("as", cell.adapter, cell.source)]

    def finished(self, cell: Cell, record: dict) -> None:
        self.pending.pop(cell.folder, None)
        seconds = record.get("wall_seconds")
        if seconds:
            for key in self._classes(cell):
                self.measured[key].append(float(seconds) / (METHOD_COST.get(cell.method, 1.0) if key[0] == "as" else 1.0))
            self.measured[("all",)].append(float(seconds) / METHOD_COST.get(cell.method, 1.0) / ADAPTER_COST.get(cell.adapter, 1.0))
        self.bar.update(1)
        self.bar.set_postfix_str(f"left ~{fmt_seconds(self.left())}", refresh=True)

    def estimate(self, cell: Cell) -> Optional[float]:
        (mas, ma, as_) = self._classes(cell)
        if self.measured.get(mas):
            return mean(self.measured[mas])
        if self.measured.get(ma):
            return mean(self.measured[ma])
        if self.measured.get(as_):
            return mean(self.measured[as_]) * METHOD_COST.get(cell.method, 1.0)
        if self.measured.get(("all",)):
            return mean(self.measured[("all",)]) * METHOD_COST.get(cell.method, 1.0) * ADAPTER_COST.get(cell.adapter, 1.0)
        return None

    def left(self) -> Optional[float]:
        estimates = [self.estimate(c) for c in self.pending.values()]
        if any(e is None for e in estimates):
            return None
        return sum(estimates) / self.jobs

    def line(self) -> str:
        done = self.total - len(self.pending)
        return f"cells {done}/{self.total} done, time left ~{fmt_seconds(self.left()) if self.pending else '0m'}"

    def close(self) -> None:
        self.bar.close()
