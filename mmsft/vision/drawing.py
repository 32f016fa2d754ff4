"""Boxes drawn on images (PIL): annotated predictions and the report's grid of test images.

Colours: predictions orange (with class and score), ground truth green (class only), so a missed
object is a lone green box and a false positive a lone orange one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

PRED_COLOUR = (255, 140, 0)
TRUE_COLOUR = (0, 200, 60)


def draw_boxes(image, boxes, labels, names: Sequence[str], colour, scores=None, width: int = 2):
    """Draw xyxy ``boxes`` with a caption each onto a PIL image (in place) and return it."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for i, (box, label) in enumerate(zip(boxes, labels)):
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        caption = names[int(label)] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        left, top, right, bottom = draw.textbbox((0, 0), caption)
        ty = y1 - (bottom - top) - 3 if y1 > (bottom - top) + 3 else y1
        draw.rectangle([x1, ty, x1 + right - left + 4, ty + bottom - top + 3], fill=colour)
        draw.text((x1 + 2, ty), caption, fill=(0, 0, 0))
    return image


def annotate(image_path: Path, prediction: dict, names: Sequence[str], truth: Optional[dict] = None):
    """The image with predicted boxes (and the true ones when given)."""
    from PIL import Image

    with Image.open(image_path) as im:
        image = im.convert("RGB")
    if truth is not None:
        draw_boxes(image, truth["boxes"], truth["labels"], names, TRUE_COLOUR)
    return draw_boxes(image, prediction["boxes"], prediction["labels"], names, PRED_COLOUR, prediction["scores"])


def grid_png(items: list[tuple[Path, dict, dict]], names: Sequence[str], out: Path, cols: int = 4, cell: int = 320) -> Path:
    """A grid of (image, prediction, truth) tiles, each scaled into a ``cell`` square, with a legend."""
    from PIL import Image, ImageDraw

    rows = (len(items) + cols - 1) // cols
    legend = 18
    canvas = Image.new("RGB", (cols * cell, rows * cell + legend), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([4, 4, 14, 14], fill=TRUE_COLOUR)
    draw.text((18, 3), "true box", fill=(0, 0, 0))
    draw.rectangle([84, 4, 94, 14], fill=PRED_COLOUR)
    draw.text((98, 3), "predicted, with class and score", fill=(0, 0, 0))
    for k, (path, prediction, truth) in enumerate(items):
        tile = annotate(path, prediction, names, truth)
        tile.thumbnail((cell, cell))
        r, c = divmod(k, cols)
        canvas.paste(tile, (c * cell + (cell - tile.width) // 2, legend + r * cell + (cell - tile.height) // 2))
    canvas.save(out)
    return out
