"""Text classification data: the ``data`` schema, reading every file with its reader, cleaning and splitting."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ...data.cache import cached_splits, fingerprint
from ...data.readers import READERS, reader_paths
from ...data.splits import DedupePolicy, SplitSpec, dedupe, split_rows
from ...errors import UserError, suggest
from ...paths import resolve_data_path

KIND = "text_classification"
SPLITS = ("all", "train", "validation", "test")


@dataclass
class TextClassificationData:
    format: str  # a reader in mmsft.data.readers.READERS: csv, tsv, jsonl, phrasebank, review_xml
    files: dict[str, Union[str, list[str]]]  # split (all|train|validation|test) -> path(s) under the data root
    labels: list[str]  # label names in id order
    text_column: Union[str, list[str]] = "text"  # several names: the first one present is used
    label_column: str = "label"
    label_map: dict[str, str] = field(default_factory=dict)  # raw label value -> label name
    encoding: str = "utf-8"
    split: SplitSpec = field(default_factory=SplitSpec)
    dedupe: DedupePolicy = "exact"
    max_train_samples: Optional[int] = None
    root: Optional[str] = None  # data root for this task; default: MMSFT_DATA_ROOT or ../shared/data
    augment: list[Any] = field(default_factory=list)  # [{method, factor, seed, ...options}]: see mmsft.augment

    def validate(self, path: str) -> None:
        if self.format not in READERS:
            raise UserError(f"unknown data format '{self.format}'.{suggest(self.format, READERS.names())}",
                            where=f"{path}.format", expected="one of: " + ", ".join(READERS.names()))
        for key in self.files:
            if key not in SPLITS:
                raise UserError(f"unknown split '{key}'.{suggest(key, SPLITS)}", where=f"{path}.files.{key}", expected=", ".join(SPLITS))
        if "all" not in self.files and not ("train" in self.files and "test" in self.files):
            raise UserError("need files.all, or files.train and files.test", where=f"{path}.files")
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise UserError(f"labels must be a list of at least two distinct names, got {self.labels}", where=f"{path}.labels")
        from ...augment import parse_entries

        parse_entries(self.augment, KIND, f"{path}.augment")


def data_paths(spec: TextClassificationData, root, patterns) -> list:
    """The files (or, for a table reader, folders and hub ids) a ``files`` entry names."""
    return reader_paths(READERS.get(spec.format), root, patterns)


def read_split(spec: TextClassificationData, patterns) -> list[dict]:
    root = resolve_data_path(spec, "")
    label_ids = {name: i for i, name in enumerate(spec.labels)}
    rows = []
    reader = READERS.get(spec.format)
    for path in data_paths(spec, root, patterns):
        for row in reader(path, encoding=spec.encoding, text_column=spec.text_column, label_column=spec.label_column):
            name = spec.label_map.get(row["label"], row["label"])
            if name not in label_ids:
                raise UserError(f"label '{row['label']}' is not in the label list.{suggest(name, spec.labels)}",
                                where=f"{path}:{row['source'].rsplit(':', 1)[-1]}", expected="one of: " + ", ".join(spec.labels))
            if not row["text"].strip():
                raise UserError("empty text", where=f"{path}:{row['source'].rsplit(':', 1)[-1]}")
            rows.append({"text": row["text"], "label": name, "source": row["source"]})
    return rows


def build_splits(spec: TextClassificationData) -> tuple[dict[str, list[dict]], dict]:
    """Read every file, dedupe (before splitting, so duplicates cannot leak across splits), split."""
    stats: dict = {}
    if "all" in spec.files:
        rows, stats = dedupe(read_split(spec, spec.files["all"]), spec.dedupe)
        fractions = {"train": spec.split.train, "validation": spec.split.validation, "test": spec.split.test}
        splits = split_rows(rows, fractions, spec.split.seed, spec.split.stratify)
    else:
        splits = {name: read_split(spec, spec.files[name]) for name in ("train", "validation", "test") if name in spec.files}
        splits["train"], stats = dedupe(splits["train"], spec.dedupe)
        if "validation" not in splits:
            share = spec.split.validation / max(spec.split.train + spec.split.validation, 1e-9)
            carved = split_rows(splits["train"], {"train": 1 - share, "validation": share}, spec.split.seed, spec.split.stratify)
            splits.update(carved)
    for name in ("train", "validation", "test"):
        if not splits.get(name):
            raise UserError(f"split '{name}' is empty after cleaning and splitting", where="data.files")
    if spec.max_train_samples:
        splits["train"] = splits["train"][: spec.max_train_samples]
    if spec.augment:  # after splitting and subsetting: new rows come from train only, never leak
        from ...augment import augment_rows, parse_entries

        held_out = [r["text"] for name in ("validation", "test") for r in splits[name]]
        new, stats["augment"] = augment_rows(splits["train"], parse_entries(spec.augment, KIND, "data.augment"),
                                             seed=spec.split.seed, forbidden=held_out)
        splits["train"] = splits["train"] + new
    label_ids = {n: i for i, n in enumerate(spec.labels)}
    for rows in splits.values():
        for row in rows:
            row["label"] = label_ids[row["label"]]
    return splits, stats


def load_splits(cfg):
    """The cleaned splits as a ``DatasetDict`` (Arrow, cached under a key of the data spec and files)."""
    from ...config import to_dict

    spec = cfg.data
    root = resolve_data_path(spec, "")
    files = [p for f in (spec.files[k] for k in sorted(spec.files)) for p in data_paths(spec, root, f)]
    key = f"{cfg.name}-{fingerprint(to_dict(spec), files)}"
    return cached_splits(key, lambda: build_splits(spec)[0])
