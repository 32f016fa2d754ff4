"""Text classification bindings for ``mmsft data check`` (raw view, cleaned copy) and ``mmsft data augment``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ...dataqc.fix import write_jsonl, write_task_yaml
from ...dataqc.views import SPLIT_ORDER, Item, QCData
from ...errors import UserError
from ...paths import resolve_data_path
from .data import build_splits, data_paths, read_split


def view(cfg) -> QCData:
    """Raw rows per files key (the task's own reader), and the split each lands in after the task's
    own dedupe and split; augmentation is switched off (the check is about the source data)."""
    spec = dataclasses.replace(cfg.data, augment=[], max_train_samples=None)
    root = resolve_data_path(spec, "")
    items, files = [], {}
    for key in sorted(spec.files, key=lambda k: ("all", *SPLIT_ORDER).index(k)):
        files[key] = [str(p) for p in data_paths(spec, root, spec.files[key])]
        for row in read_split(spec, spec.files[key]):
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


def write_fixed(cfg, data: QCData, removed: dict, relabel: dict, tmp: Path, out: Path) -> None:
    write_jsonl(data, removed, tmp, lambda it: {"text": it.text, "label": relabel.get(it.id, it.label)})
    write_task_yaml(cfg, data, tmp, out, {"text_column": "text", "label_column": "label", "label_map": {}})


def write_augmented(cfg, raw: dict, entry, tmp: Path, out: Path) -> dict:
    """``train.jsonl`` (the task's train split after its own cleaning, plus the new rows), the untouched
    ``validation.jsonl`` / ``test.jsonl``, and ``task.yaml`` pointing at them."""
    import yaml

    from ...config import to_dict

    spec = dataclasses.replace(cfg.data, augment=[raw])
    splits, stats = build_splits(spec)
    labels = spec.labels
    n_original = len(splits["train"]) - sum(v["added"] for v in stats["augment"].values())
    for name, rows in splits.items():
        with (tmp / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                record = {"text": row["text"], "label": labels[row["label"]], "source": row["source"]}
                if name == "train" and i >= n_original:
                    record["augmented"] = entry.method
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    task = to_dict(cfg)
    for key in ("adapters", "output_dir"):
        task.pop(key, None)
    task["name"] = f"{cfg.name}_{entry.method}"
    task["description"] = (f"{cfg.description.strip()} Augmented copy written by `mmsft data augment {cfg.name} --method {entry.method}`: "
                           f"train = the original train split plus {stats['augment'][f'0:{entry.method}']['added']} new rows; "
                           "validation and test are the original splits, untouched.")
    task["data"].update({"format": "jsonl", "root": str(out), "files": {k: f"{k}.jsonl" for k in splits},
                         "text_column": "text", "label_column": "label", "label_map": {}, "encoding": "utf-8",
                         "max_train_samples": None, "augment": []})
    (tmp / "task.yaml").write_text(f"# mmsft train {out / 'task.yaml'} --adapter lora\n" + yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    counts = {name: len(rows) for name, rows in splits.items()}
    return {"rows": counts, "original_train_rows": n_original, "augment": stats["augment"]}
