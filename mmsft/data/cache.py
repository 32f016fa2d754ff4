"""Arrow caching through ``datasets``: cleaned splits saved once, memory-mapped afterwards."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from .. import paths


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts plus (size, mtime) of any Path among them."""
    def norm(x):
        if isinstance(x, Path):
            st = x.stat()
            return [str(x), st.st_size, int(st.st_mtime)]
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        return x

    return hashlib.sha1(json.dumps(norm(parts), sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_splits(key: str, build: Callable[[], dict[str, list[dict]]]):
    """``DatasetDict`` of the rows ``build`` returns, stored under the cache as Arrow files."""
    from datasets import Dataset, DatasetDict, load_from_disk

    folder = paths.cache_dir() / "datasets" / key
    if (folder / "dataset_dict.json").is_file():
        return load_from_disk(str(folder))
    splits = build()
    dd = DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dd.save_to_disk(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return load_from_disk(str(folder))


def tokenized(dataset, fn: Callable, key: str, split: str):
    """``dataset.map(fn)`` with its Arrow result cached under the cache folder by ``key``."""
    folder = paths.cache_dir() / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    return dataset.map(fn, batched=True, cache_file_name=str(folder / f"{key}-{split}.arrow"), desc=f"tokenize {split}")
