"""Image classification bindings for ``mmsft data check``: ImageFolder view and cleaned copy."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ...dataqc.views import SPLIT_ORDER, Item, QCData
from ...paths import resolve_data_path
from .data import load_splits, read_split


def view(cfg) -> QCData:
    """ImageFolder splits: one item per image, the class folder as label."""
    spec = dataclasses.replace(cfg.data, max_train_samples=None, max_eval_samples=None)
    base = resolve_data_path(spec, spec.source)
    data = load_splits(spec)
    labels = list(data["labels"])
    where = {str(path): name for name in SPLIT_ORDER for path, _ in data.get(name, [])}
    items, files = [], {}
    for key in [k for k in SPLIT_ORDER if k in spec.splits]:
        files[key] = [str(base / spec.splits[key])]
        rows, _, _ = read_split(base / spec.splits[key], labels, spec.skip_bad)
        for path, label in rows:
            items.append(Item(len(items), labels[label], key, str(path), where.get(str(path), "dropped"), image=Path(path)))
    return QCData(cfg.name, cfg.kind, "image", items, labels, files)


def write_fixed(cfg, data: QCData, removed: dict, relabel: dict, tmp: Path, out: Path) -> None:
    """``<split>/<class>/<image>`` copies, and the task YAML pointing at them."""
    import yaml

    from ...config import to_dict

    for it in data.items:
        if it.id not in removed:
            folder = tmp / it.file_key / str(relabel.get(it.id, it.label))
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(it.image, folder / it.image.name)
    spec = to_dict(cfg)
    for key in ("adapters", "output_dir"):
        spec.pop(key, None)
    spec["name"] = f"{cfg.name}_fixed"
    spec["data"].update({"root": str(out.parent), "source": out.name, "splits": {k: k for k in data.file_keys()}})
    (tmp / "task.yaml").write_text(f"# mmsft train {out / 'task.yaml'}\n" + yaml.safe_dump(spec, sort_keys=False))
