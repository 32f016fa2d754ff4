"""PNG plots for reports (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..training.logfile import json_records  # noqa: E402


def curves_png(metrics_log: Path, out: Path, metric: str) -> bool:
    """Training loss per logged step and the validation metric per evaluation."""
    if not metrics_log.is_file():
        return False
    records = list(json_records(metrics_log.read_text().splitlines()))
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval" and metric in r]
    if not train:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r[metric] for r in evals], "o-", color="tab:orange", label=f"validation {metric}")
        ax2.set_ylabel(f"validation {metric}", color="tab:orange")
    ax.set_title("Training curves")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def confusion_matrix_png(references, predictions, labels: list[str], out: Path) -> None:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(references, predictions, labels=list(range(len(labels))))
    size = max(4.0, 0.18 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    small = len(labels) <= 12
    ax.set_xticks(range(len(labels)), labels if small else [], rotation=45 if small else 0, ha="right")
    ax.set_yticks(range(len(labels)), labels if small else [])
    if small:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised colour, counts)" if small else "Confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
