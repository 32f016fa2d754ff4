"""The one internal detection sample format, the load result, and the bad-sample bookkeeping.

Every loader (YOLO, COCO, VOC) returns a :class:`DetectionSet`: ``samples`` (list of
:class:`DetectionSample`, boxes xyxy in pixels of the image as stored on disk, labels 0..K-1),
``class_names`` (index = label), ``skipped`` (reason -> count, only with ``skip_bad=True``),
``issues`` (one "where: message" line per skipped item) and ``dropped_boxes`` (boxes left out by an
option, e.g. COCO crowd boxes).  ``samples, names = load_x(...)`` unpacks the first two.

Bad input raises :class:`BadSample` (a ``UserError`` carrying a machine-readable ``reason``) naming the
file and line (or annotation id).  With ``skip_bad=True`` the sample is left out and counted instead.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch

from ..errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# reason keys used in BadSample.reason and DetectionSet.skipped
REASONS = {
    "unreadable_image": "image file is missing, corrupt or not an image",
    "class_out_of_range": "class id / name is not in the class list",
    "box_out_of_image": "box lies outside the image beyond the tolerance",
    "empty_box": "box has zero or negative width or height",
    "malformed_label": "label line / record cannot be parsed",
    "label_without_image": "annotations exist for an image that is not there",
    "image_without_label": "image has no label file (YOLO with missing_label='error')",
    "size_mismatch": "declared image size differs from the real one",
}


class BadSample(UserError):
    """One bad sample or label file; ``reason`` is a key of ``REASONS``."""

    def __init__(self, reason: str, message: str, *, where: str | None = None, expected: str | None = None):
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(message, where=where, expected=expected)


@dataclass
class DetectionSample:
    """One image with its boxes (N x 4 float32, xyxy pixels, clipped to the image) and labels (len N)."""

    image_path: Path
    width: int
    height: int
    boxes: torch.Tensor
    labels: list[int]

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4)
        self.labels = [int(x) for x in self.labels]
        if len(self.labels) != self.boxes.shape[0]:
            raise ValueError(f"{self.image_path}: {self.boxes.shape[0]} boxes but {len(self.labels)} labels")


@dataclass
class DetectionSet:
    samples: list[DetectionSample]
    class_names: list[str]
    skipped: Counter = field(default_factory=Counter)
    issues: list[str] = field(default_factory=list)
    dropped_boxes: Counter = field(default_factory=Counter)
    source: str = ""
    category_ids: Optional[list[int]] = None  # COCO: original category id per label

    def __iter__(self) -> Iterator:
        """Unpacks as ``samples, class_names``."""
        yield self.samples
        yield self.class_names

    @property
    def num_boxes(self) -> int:
        return sum(len(s.labels) for s in self.samples)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(label for s in self.samples for label in s.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def summary(self) -> str:
        text = f"{self.source}: {len(self.samples)} images, {self.num_boxes} boxes, {len(self.class_names)} classes"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
        if self.dropped_boxes:
            text += "; dropped boxes " + ", ".join(f"{k}={v}" for k, v in sorted(self.dropped_boxes.items()))
        return text


class Collector:
    """Raises bad samples, or (``skip_bad``) counts them per reason."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.skipped: Counter = Counter()
        self.issues: list[str] = []

    def reject(self, exc: BadSample) -> None:
        if not self.skip_bad:
            raise exc
        self.skipped[exc.reason] += 1
        self.issues.append(str(exc))

    def finish(self, samples: list[DetectionSample], class_names: Sequence[str], source: str,
               dropped: Optional[Counter] = None) -> DetectionSet:
        if not samples:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
            detail = f"; every sample was rejected: {counts}" if self.skipped else ""
            raise UserError(f"empty split: no usable images{detail}", where=source,
                            expected="at least one image with valid annotations")
        return DetectionSet(samples, list(class_names), self.skipped, self.issues, dropped or Counter(), source)


def probe_image(path: Union[str, Path], *, decode: bool = True, where: str | None = None) -> tuple[int, int]:
    """(width, height) of an image file; ``decode`` reads all pixels so truncated files are caught."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise BadSample("unreadable_image", "image file not found", where=where or str(path))
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            width, height = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadSample("unreadable_image", f"cannot read image: {exc}", where=where or str(path)) from None
    if width <= 0 or height <= 0:
        raise BadSample("unreadable_image", "image has zero size", where=where or str(path))
    return width, height
