"""The raw view of a task's data that every check works on: one ``Item`` per row / image as the task
reads it, BEFORE the task's own cleaning, tagged with the file it came from and the split the
task's configured cleaning and splitting puts it in ("dropped" when the task's dedupe removes it).

A view is built per task kind (``VIEWS`` registry); kinds added later register their own.  Kinds
without one are checked through their ``load_data`` when it returns ``DetectionSet`` splits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UserError
from ..registry import Registry

SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class Item:
    id: int
    label: Any  # class name (text) or list of class names (detection: one per box)
    file_key: str  # the task's files key: all | train | validation | test (detection: the split)
    source: str  # file:line, or the image path
    split: str  # effective split after the task's cleaning and splitting, or "dropped"
    text: Optional[str] = None
    image: Optional[Path] = None
    extra: dict = field(default_factory=dict)  # detection: boxes (xyxy), width, height


@dataclass
class QCData:
    task: str
    kind: str
    modality: str  # "text" | "image"
    items: list[Item]
    labels: list[str]
    files: dict[str, list[str]]  # files key -> paths read
    cleaning: dict = field(default_factory=dict)  # the task's own cleaning counts (dedupe)
    backbone: Optional[str] = None
    max_length: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    def by_split(self, split: str) -> list[Item]:
        return [it for it in self.items if it.split == split]

    def splits(self) -> list[str]:
        present = {it.split for it in self.items}
        return [s for s in (*SPLIT_ORDER, "dropped") if s in present]

    def file_keys(self) -> list[str]:
        return list(dict.fromkeys(it.file_key for it in self.items))


VIEWS: Registry[Callable[[Any], QCData]] = Registry("data-check view")


@VIEWS.register("text_classification")
def text_classification_view(cfg) -> QCData:
    """Raw rows per files key (the task's own reader), and the split each lands in after the task's
    own dedupe and split; augmentation is switched off (the check is about the source data)."""
    from ..data.readers import expand
    from ..kinds.base import resolve_data_path
    from ..kinds.text_classification import _read_split, build_splits

    spec = dataclasses.replace(cfg.data, augment=[], max_train_samples=None)
    root = resolve_data_path(spec, "")
    items, files = [], {}
    for key in sorted(spec.files, key=lambda k: ("all", *SPLIT_ORDER).index(k)):
        files[key] = [str(p) for p in expand(root, spec.files[key])]
        for row in _read_split(spec, spec.files[key]):
            items.append(Item(len(items), row["label"], key, row["source"], "dropped", text=row["text"]))
    if not items:
        raise UserError("the task's data has no rows", where="data.files")
    splits, cleaning = build_splits(spec)
    cleaning = {"policy": spec.dedupe, **cleaning}
    where = {}
    for name, rows in splits.items():
        for row in rows:
            where[(row["source"], row["text"], spec.labels[row["label"]])] = name
    for item in items:
        item.split = where.get((item.source, item.text, item.label), "dropped")
    return QCData(cfg.name, cfg.kind, "text", items, list(spec.labels), files, cleaning,
                  backbone=cfg.model.backbone, max_length=cfg.model.max_length)


@VIEWS.register("generation")
def generation_view(cfg) -> QCData:
    """Conversations / pairs: the item text is the user side (what leaks or repeats), the label the
    ``stratify_column`` field (e.g. intent) when there is one, ``turns`` the messages."""
    from ..data.readers import expand
    from ..generation.data import read_split
    from ..generation.spec import build_splits
    from ..kinds.base import resolve_data_path

    spec = dataclasses.replace(cfg.data, max_train_samples=None, max_validation_samples=None, max_test_samples=None)
    root = resolve_data_path(spec, "")
    field_name = spec.stratify_column or next(iter(spec.field_columns), None)

    def user_text(row) -> str:
        return "\n".join(m["content"] for m in row["messages"] if m["role"] != "assistant")

    items, files = [], {}
    for key in sorted(spec.files, key=lambda k: ("all", *SPLIT_ORDER).index(k)):
        patterns = [spec.files[key]] if isinstance(spec.files[key], str) else spec.files[key]
        files[key] = [str(p) for pat in patterns for p in expand(root, pat.replace("{lang}", spec.source_lang))]
        for row in read_split(spec, root, spec.files[key]):
            label = str(row["fields"].get(field_name, "")) if field_name else ""
            text = user_text(row)
            full = "\n".join(m["content"] for m in row["messages"])
            items.append(Item(len(items), label, key, row["source"], "dropped", text=text,
                              extra={"turns": row["messages"], "full_text": full, "fields": row["fields"]}))
    if not items:
        raise UserError("the task's data has no rows", where="data.files")
    where = {(row["source"], user_text(row)): name for name, rows in build_splits(spec).items() for row in rows}
    for item in items:
        item.split = where.get((item.source, item.text), "dropped")
    labels = sorted({it.label for it in items})
    return QCData(cfg.name, cfg.kind, "text", items, labels, files, {"policy": "none"},
                  backbone=cfg.model.backbone, max_length=cfg.model.max_length)


@VIEWS.register("image_classification")
def image_classification_view(cfg) -> QCData:
    """ImageFolder splits: one item per image, the class folder as label."""
    from ..kinds import KINDS
    from ..kinds.base import resolve_data_path
    from ..kinds.image_classification import _read_split

    spec = dataclasses.replace(cfg.data, max_train_samples=None, max_eval_samples=None)
    base = resolve_data_path(spec, spec.source)
    data = KINDS.get(cfg.kind).load_data(dataclasses.replace(cfg, data=spec))
    labels = list(data["labels"])
    where = {str(path): name for name in SPLIT_ORDER for path, _ in data.get(name, [])}
    items, files = [], {}
    for key in [k for k in SPLIT_ORDER if k in spec.splits]:
        files[key] = [str(base / spec.splits[key])]
        rows, _, _ = _read_split(base / spec.splits[key], labels, spec.skip_bad)
        for path, label in rows:
            items.append(Item(len(items), labels[label], key, str(path), where.get(str(path), "dropped"), image=Path(path)))
    return QCData(cfg.name, cfg.kind, "image", items, labels, files)


def detection_view(task: str, sets: dict, kind: str = "detection") -> QCData:
    """A view over ``{split: DetectionSet}`` (the YOLO / COCO / VOC loaders' result)."""
    items, names, files = [], None, {}
    for split, dset in sets.items():
        names = names or list(dset.class_names)
        if list(dset.class_names) != names:
            raise UserError(f"split '{split}' has other class names than the first split", where=str(dset.source))
        files[split] = [str(dset.source)]
        for sample in dset.samples:
            items.append(Item(len(items), [names[i] for i in sample.labels], split, str(sample.image_path), split,
                              image=Path(sample.image_path),
                              extra={"boxes": sample.boxes.tolist(), "width": sample.width, "height": sample.height}))
    if not items:
        raise UserError("the task's data has no images", where=task)
    notes = [f"{split}: {dset.summary()}" for split, dset in sets.items()]
    return QCData(task, kind, "image", items, names or [], files, notes=notes)


def build_view(cfg) -> QCData:
    """The view for ``cfg``'s kind; a kind without a registered view is read through ``load_data``."""
    if cfg.kind in VIEWS:
        return VIEWS.get(cfg.kind)(cfg)
    from ..kinds import KINDS
    from ..vision.samples import DetectionSet

    data = KINDS.get(cfg.kind).load_data(cfg)
    if isinstance(data, dict) and data and all(isinstance(v, DetectionSet) for v in data.values()):
        return detection_view(cfg.name, data, cfg.kind)
    raise UserError(f"`data check` has no view for task kind '{cfg.kind}' yet",
                    expected="a kind with a view in mmsft.dataqc.views.VIEWS (" + ", ".join(VIEWS.names()) + ")")
