"""Generation bindings for ``mmsft data check``: the raw view of conversations and the cleaned copy."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...dataqc.fix import write_jsonl, write_task_yaml
from ...dataqc.views import SPLIT_ORDER, Item, QCData
from ...errors import UserError
from ...paths import resolve_data_path
from .data import build_splits
from .readers import GEN_READERS, read_split


def _user_text(row) -> str:
    return "\n".join(m["content"] for m in row["messages"] if m["role"] != "assistant")


def _label_field(spec):
    return spec.stratify_column or next(iter(spec.field_columns), None)


def view(cfg) -> QCData:
    """Conversations / pairs: the item text is the user side (what leaks or repeats), the label the
    ``stratify_column`` field (e.g. intent) when there is one, ``turns`` the messages."""
    from ...data.readers import reader_paths

    spec = dataclasses.replace(cfg.data, max_train_samples=None, max_validation_samples=None, max_test_samples=None)
    root = resolve_data_path(spec, "")
    field_name = _label_field(spec)
    items, files = [], {}
    for key in sorted(spec.files, key=lambda k: ("all", *SPLIT_ORDER).index(k)):
        patterns = [spec.files[key]] if isinstance(spec.files[key], str) else spec.files[key]
        reader = GEN_READERS.get(spec.format)
        files[key] = [str(p) for pat in patterns for p in reader_paths(reader, root, pat.replace("{lang}", spec.source_lang))]
        for row in read_split(spec, root, spec.files[key]):
            label = str(row["fields"].get(field_name, "")) if field_name else ""
            full = "\n".join(m["content"] for m in row["messages"])
            items.append(Item(len(items), label, key, row["source"], "dropped", text=_user_text(row),
                              extra={"turns": row["messages"], "full_text": full, "fields": row["fields"]}))
    if not items:
        raise UserError("the task's data has no rows", where="data.files")
    where = {(row["source"], _user_text(row)): name for name, rows in build_splits(spec).items() for row in rows}
    for item in items:
        item.split = where.get((item.source, item.text), "dropped")
    labels = sorted({it.label for it in items})
    return QCData(cfg.name, cfg.kind, "text", items, labels, files, {"policy": "none"},
                  backbone=cfg.model.backbone, max_length=cfg.model.max_length)


def write_fixed(cfg, data: QCData, removed: dict, relabel: dict, tmp: Path, out: Path) -> None:
    """Conversations as ``{"messages": [...], <field>: label}`` lines (the generation jsonl format)."""
    field_name = _label_field(cfg.data)

    def record(it):
        row = {"messages": it.extra["turns"], **it.extra.get("fields", {})}
        if field_name:
            row[field_name] = relabel.get(it.id, it.label)
        return row

    write_jsonl(data, removed, tmp, record)
    write_task_yaml(cfg, data, tmp, out, {})
