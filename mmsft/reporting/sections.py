"""Report sections shared by kinds (classification: confusion matrix and per-class scores)."""
from __future__ import annotations

from pathlib import Path


def classification_sections(test, labels: list[str], run_dir: Path) -> list[str]:
    from sklearn.metrics import classification_report

    from .plots import confusion_matrix_png

    confusion_matrix_png(test.references, test.predictions, labels, run_dir / "confusion_matrix.png")
    text = classification_report(test.references, test.predictions, labels=list(range(len(labels))),
                                 target_names=labels, digits=3, zero_division=0)
    return ["## Confusion matrix (test)\n\n![confusion matrix](confusion_matrix.png)\n",
            "## Per-class scores (test)\n\n```\n" + text + "```\n"]
