"""Image grids for the image + text run reports (matplotlib, headless)."""
from __future__ import annotations

import textwrap
from pathlib import Path

QUERIES = 6
IMAGES = 8


def _thumb(path: Path, size: int = 160):
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        return im


def retrieval_grid(test, out: Path) -> None:
    """Evenly spaced test captions, each with its top-3 images; the caption's own image framed green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(test.predictions)
    picks = sorted({round(i * (n - 1) / max(QUERIES - 1, 1)) for i in range(min(QUERIES, n))})
    images, captions = test.extra["images"], test.extra["captions"]
    fig, axes = plt.subplots(len(picks), 4, figsize=(10, 2.3 * len(picks)), squeeze=False)
    for row, q in zip(axes, picks):
        row[0].text(0, 0.5, "\n".join(textwrap.wrap(captions[q], 28)), fontsize=8, va="center")
        row[0].axis("off")
        for ax, k in zip(row[1:], test.predictions[q]):
            ax.imshow(_thumb(images[k].path))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "tab:green" if k == test.references[q] else "lightgray"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
    fig.suptitle("Query caption -> top-3 test images")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def multilabel_grid(test, names: list[str], out: Path) -> None:
    """The first test images with their true categories and the predicted ones (p >= 0.5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = test.extra["rows"][:IMAGES]
    cols = 4
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(11, 3.2 * -(-len(rows) // cols)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row, probs, truth in zip(axes.flat, rows, test.predictions, test.references):
        ax.imshow(_thumb(row.path, 200))
        true = ", ".join(names[k] for k, t in enumerate(truth) if t) or "-"
        pred = ", ".join(names[k] for k, p in enumerate(probs) if p >= 0.5) or "-"
        ax.set_title("\n".join(textwrap.wrap(f"true: {true}", 34)[:2]), fontsize=7, color="tab:green", loc="left")
        ax.text(0, -0.06, "\n".join(textwrap.wrap(f"pred: {pred}", 34)[:2]), fontsize=7, color="tab:orange",
                transform=ax.transAxes, va="top")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
