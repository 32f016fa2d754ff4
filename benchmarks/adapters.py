"""Adapters benchmark: finance_sentiment and banking77_intent x full / lora / frozen on MiniLM-L6.

    python benchmarks/adapters.py [--tasks finance_sentiment banking77_intent] [--adapters full lora frozen]

Each run is `mmsft train TASK --adapter A` with the shipped defaults, in its own process.  Writes
benchmarks/results/adapters.{md,json,png}.  Rows already in adapters.json for other (task, adapter)
pairs are kept, so the matrix can be filled in several sittings.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, train_in_subprocess, write_json  # noqa: E402

TARGETS = {("finance_sentiment", "lora"): 0.84, ("finance_sentiment", "full"): 0.85, ("finance_sentiment", "frozen"): 0.75,
           ("banking77_intent", "full"): 0.92, ("banking77_intent", "lora"): 0.91}
BASELINES = {"finance_sentiment": ("TF-IDF + logistic regression", 0.776), "banking77_intent": ("TF-IDF + logistic regression", 0.894)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "value", "test accuracy"), (axes[1], "train_seconds", "train seconds (frozen: incl. feature encoding)")):
        for i, task in enumerate(tasks):
            sub = [r for r in rows if r["task"] == task]
            xs = [i * (len(sub) + 1) + j for j in range(len(sub))]
            bars = ax.bar(xs, [r[key] for r in sub], color=["tab:blue", "tab:orange", "tab:green"][: len(sub)])
            for x, r, b in zip(xs, sub, bars):
                ax.text(x, b.get_height(), f"{r['adapter']}\n{r[key]:.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks([i * 4 + 1 for i in range(len(tasks))], tasks)
        ax.set_ylabel(label)
        if key == "value":
            ax.set_ylim(0.5, 1.02)
    fig.suptitle("mmsft adapters on MiniLM-L6 (2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mb(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def render(rows: list[dict], command: str) -> str:
    lines = header("Adapters benchmark: full / LoRA / frozen on MiniLM-L6", command)
    lines += ["Each row is one `mmsft train TASK --adapter ADAPTER` with the shipped defaults (tasks/*.yaml, adapters/*.yaml),",
              "trained on the task's train split, early-stopped on validation, scored once on test.", "",
              "Rows may come from several sittings of this script (it keeps rows of the pairs it does not run): `measured` dates",
              "each row and `load` is the 1-minute load average just before it started (it decays over about a minute, so the",
              "previous row of the same sitting still shows as 1-2; well above 2 means other jobs shared the 2 cores).", "",
              "| task | adapter | test accuracy | target | macro-F1 | trainable params | train s | samples/s | peak MB | training MB | epochs | measured | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = TARGETS.get((r["task"], r["adapter"]))
        ok = "" if target is None else (f"≥ {target} ✅" if r["value"] >= target else f"≥ {target} ❌")
        lines.append(f"| {r['task']} | {r['adapter']} | {r['value']:.4f} | {ok} | {r['f1_macro']:.4f} | {r['trainable_params']:,} | "
                     f"{r['train_seconds']:.0f} | {r['samples_per_second']:.1f} | {r['peak_memory_mb']:.0f} | {_mb(r.get('training_memory_mb'))} | {r['epochs']} | "
                     f"{r.get('measured_at', '—')} | {r.get('load_before', '—')} |")
    lines += ["", "Baselines on the same splits: " + "; ".join(f"{t}: {n} {v}" for t, (n, v) in BASELINES.items()), "",
              "Train seconds include the one-off feature encoding for `frozen` (the backbone runs once, then only the head trains).",
              "Peak MB: the run's peak RSS, counted from the moment its model and data are loaded (frozen's feature encoding, "
              "training and validation inside it); training MB: that peak minus the RSS at that moment, the memory training "
              "itself takes. Rows measured before 2026-12-07 20:00 UTC counted the whole process's peak and have no training figure.", "", "![adapters](adapters.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["finance_sentiment", "banking77_intent"])
    ap.add_argument("--adapters", nargs="+", default=["full", "lora", "frozen"])
    ap.add_argument("--render-only", action="store_true", help="rewrite adapters.md/.png from adapters.json without training")
    args = ap.parse_args()
    json_path = RESULTS / "adapters.json"
    if args.render_only:
        rows = json.loads(json_path.read_text())
        plot(rows, RESULTS / "adapters.png")
        (RESULTS / "adapters.md").write_text(render(rows, "python benchmarks/adapters.py (rows from the sittings named in the Note)"))
        return
    with tempfile.TemporaryDirectory(prefix="mmsft-bench-") as tmp:
        for task in args.tasks:
            for adapter in args.adapters:
                stamp = measured()
                m = train_in_subprocess(task, adapter, Path(tmp) / f"{task}-{adapter}")
                rows = json.loads(json_path.read_text()) if json_path.is_file() else []  # re-read: other sittings may have added rows
                rows = [r for r in rows if (r["task"], r["adapter"]) != (task, adapter)]
                rows.append({"task": task, "adapter": adapter, "metric": "accuracy", "value": m["test"]["accuracy"],
                             "f1_macro": m["test"].get("f1_macro"), "trainable_params": m["trainable_params"],
                             "train_seconds": m["train_seconds"], "samples_per_second": m["samples_per_second"],
                             "peak_memory_mb": m["peak_memory_mb"], "training_memory_mb": m.get("training_memory_mb"),
                             "epochs": m["epochs_completed"],
                             **stamp})
                rows.sort(key=lambda r: (r["task"], ["full", "lora", "frozen"].index(r["adapter"]) if r["adapter"] in ("full", "lora", "frozen") else 9))
                write_json(json_path, rows)
                command = command_line("adapters.py")
                plot(rows, RESULTS / "adapters.png")
                (RESULTS / "adapters.md").write_text(render(rows, command.strip()))


if __name__ == "__main__":
    main()
