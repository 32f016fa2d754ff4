"""The matrix as files: ``<stem>.json`` (rows, summary, best method per pair), ``<stem>.md`` (how to read
it, the summary, one accuracy and one gap table per adapter x method) and ``<stem>.png`` (one heatmap
panel per adapter x method), each written atomically.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from .matrix import best_per_pair, build_rows, summarise

OWN = "own test"  # column for sources outside the targets (their in-domain score)

HOW_TO_READ = """\
## How to read it

- A **row** is a source task: a model fine-tuned on its labelled train split (early-stopped on its own
  validation split). A **column** is a target task: that model scored on the target's test split.
  Each cell is the mean test accuracy over seeds ± the sample standard deviation.
- The **diagonal** (bold) is in-domain: `source_only` trained and scored on the same task. In the panels
  of an adaptation method it is repeated from `source_only` for reference (the method needs a different
  target).
- **Transfer gap** = the target's in-domain accuracy minus the transfer accuracy (same adapter): how much
  of the target's own ceiling the model loses by having trained elsewhere. Lower is better.
- **Adaptation methods** see the target only through its unlabelled *training* texts (never a label,
  never its test split): `target_mlm` continues the backbone's masked-LM training on source + target
  texts before the fine-tune; `dann` trains a domain classifier on the pooled features with the task
  while the backbone is pushed to confuse it (`dann.adversary`: confusion, the default, or Ganin's
  gradient reversal). *Gain* is accuracy minus `source_only`'s on the same pair, paired by seed; a gain *pays*
  when it exceeds twice its standard error over seeds.
"""


def _short(task: str) -> str:
    return task.replace("reviews_", "").replace("_sentiment", "")


def _columns(rows: list[dict], targets: list[str]) -> list[str]:
    sources = list(dict.fromkeys(r["source"] for r in rows))
    return [*targets, *([OWN] if any(s not in targets for s in sources) else [])]


def _cell(by_key: dict, source: str, column: str, method: str, adapter: str) -> Optional[dict]:
    if column == OWN or column == source:
        return by_key.get((source, source, "source_only", adapter))
    return by_key.get((source, column, method, adapter))


def _matrix_tables(rows: list[dict], targets: list[str]) -> list[str]:
    by_key = {(r["source"], r["target"], r["method"], r["adapter"]): r for r in rows}
    lines = []
    columns = _columns(rows, targets)
    for adapter, method in dict.fromkeys((r["adapter"], r["method"]) for r in rows):
        sources = list(dict.fromkeys(r["source"] for r in rows if (r["adapter"], r["method"]) == (adapter, method)))
        for title, value in (("accuracy", "acc"), ("transfer gap", "gap")):
            lines += [f"### {adapter} / {method}: {title}", "", "| source \\ target | " + " | ".join(columns) + " |",
                      "|---" * (len(columns) + 1) + "|"]
            for source in sources:
                cells = []
                for column in columns:
                    r = _cell(by_key, source, column, method, adapter)
                    if r is None:
                        cells.append("—")
                    elif r["in_domain"]:
                        cells.append(f"**{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}**" if value == "acc" else "—")
                    elif value == "acc":
                        cells.append(f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}")
                    else:
                        cells.append("—" if r.get("transfer_gap") is None else f"{r['transfer_gap']:+.4f}")
                lines.append(f"| {source} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _pct(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def render(data: dict, header: list[str], targets: list[str]) -> str:
    lines = [*header, HOW_TO_READ, "## Summary (accuracy in %, means over the group's pairs)", "",
             "| pairs | adapter | method | n | seeds | mean transfer acc | ± over seeds | mean gap | gain over source_only | ± | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in data["summary"]:
        lines.append(f"| {s['group']} | {s['adapter']} | {s['method']} | {s['pairs']} | {len(s['seeds'])} | {_pct(s['accuracy_mean'])} | "
                     f"{_pct(s['accuracy_std_over_seeds'])} | {_pct(s['transfer_gap_mean'], True)} | "
                     f"{_pct(s.get('gain_over_source_only'), True)} | {_pct(s.get('gain_std_over_seeds'))} | {s.get('verdict', '')} |")
    if data["best"]:
        lines += ["", "## Best method per pair", "", "Both accuracies on the seeds the best method and source_only share; gain paired by seed.",
                  "", "| adapter | source → target | source_only | best method | best | gain (points) | seeds |", "|---|---|---|---|---|---|---|"]
        for b in data["best"]:
            lines.append(f"| {b['adapter']} | {b['source']} → {b['target']} | {_pct(b['source_only_accuracy'])} | {b['best_method']} | "
                         f"{_pct(b['best_accuracy'])} | {_pct(b['gain'], True)} | {', '.join(map(str, b.get('seeds', [])))} |")
    lines += ["", "## Matrices", "", *_matrix_tables(data["rows"], targets),
              "Every row of these tables is in the JSON file next to this one (`rows`: source, target, method, adapter, "
              "accuracy_mean, accuracy_std, seeds, per-seed accuracies, macro-F1, transfer_gap, gain).", ""]
    return "\n".join(lines)


def plot(rows: list[dict], targets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..atomic import atomic_write

    by_key = {(r["source"], r["target"], r["method"], r["adapter"]): r for r in rows}
    panels = list(dict.fromkeys((r["adapter"], r["method"]) for r in rows))
    columns = _columns(rows, targets)
    sources = list(dict.fromkeys(r["source"] for r in rows))
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 + 1.25 * len(columns) * ncols, 0.9 + 0.75 * len(sources) * nrows), squeeze=False)
    values = [r["accuracy_mean"] for r in rows]
    vmin, vmax = min(values), max(values)
    for ax, (adapter, method) in zip(axes.flat, panels):
        grid = np.full((len(sources), len(columns)), np.nan)
        for i, source in enumerate(sources):
            for j, column in enumerate(columns):
                r = _cell(by_key, source, column, method, adapter)
                if r is not None:
                    grid[i, j] = r["accuracy_mean"]
                    text = f"{r['accuracy_mean']:.3f}\n±{r['accuracy_std']:.3f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, fontweight="bold" if r["in_domain"] else "normal",
                            color="white" if r["accuracy_mean"] < (vmin + vmax) / 2 else "black")
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(columns)), [_short(c) for c in columns], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(sources)), [_short(s) for s in sources], fontsize=8)
        ax.set_title(f"{adapter} / {method}", fontsize=9)
        ax.set_xlabel("target (test split)", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="test accuracy (mean over seeds)")
    fig.suptitle("Cross-domain transfer: rows = source (trained on), columns = target (scored on); bold = in-domain", fontsize=9)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def write_matrix(records: list[dict], stem: Path, targets: list[str], methods: list[str], adapters: list[str],
                 header: Optional[list[str]] = None, meta: Optional[dict] = None,
                 footer: Optional[Callable[[dict], list[str]]] = None) -> dict:
    """Write ``stem.{json,md,png}`` from cell records; returns the JSON data.  ``footer(data)`` adds
    Markdown lines at the end (a benchmark's targets)."""
    from ..atomic import write_json, write_text

    rows = build_rows(records, methods, adapters)
    data = {"rows": rows, "summary": summarise(rows, targets), "best": best_per_pair(rows),
            "meta": {"written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "targets": targets, **(meta or {})},
            # every cell's record as cell.json holds it: a later run on another machine resumes from them (``seed_cells``)
            "cells": [{k: v for k, v in r.items() if k != "reused"} for r in records]}
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), data)
    if rows:
        plot(rows, targets, stem.with_suffix(".png"))
    title = ["# Cross-domain transfer matrix", ""]
    figure = [f"![matrix]({stem.with_suffix('.png').name})", ""] if rows else []
    extra = footer(data) if footer else []
    write_text(stem.with_suffix(".md"), render(data, header or title, targets) + "\n".join([*figure, *extra]))
    return data
