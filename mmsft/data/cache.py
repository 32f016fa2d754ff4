"""Arrow caching through ``datasets``: cleaned splits saved once, memory-mapped afterwards.

Both caches are written through ``mmsft.atomic`` (temporary sibling, fsync, rename), so a crash never
leaves a half-written cache entry that a later run would load.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from .. import atomic, paths


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts plus (size, mtime) of any Path among them (of every file in a folder)."""
    def norm(x):
        if isinstance(x, Path) and x.is_dir():  # a datasets folder: its files, not the folder's own mtime
            return [str(x), [norm(p) for p in sorted(x.rglob("*")) if p.is_file()]]
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
    done = folder / "dataset_dict.json"
    if done.is_file():
        return load_from_disk(str(folder))
    splits = build()
    dd = DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})
    try:
        # a folder without dataset_dict.json is left over from an older, non-atomic layout: replace it
        with atomic.atomic_folder(folder, replace=folder.exists()) as tmp:
            dd.save_to_disk(str(tmp))
    except FileExistsError:
        if not done.is_file():
            raise
        # another process saved the same splits (same key) first: use its copy
    return load_from_disk(str(folder))


def tokenized(dataset, fn: Callable, key: str, split: str):
    """``dataset.map(fn)`` with its Arrow result cached under the cache folder by ``key``.

    The first call maps into a temporary file that is installed atomically; every call then loads
    the installed file (``datasets`` memory-maps it), so first and later runs return the same thing.
    """
    folder = paths.cache_dir() / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{key}-{split}.arrow"
    if len(dataset) and not final.is_file():  # datasets maps an empty dataset without writing anything
        with atomic.atomic_path(final) as tmp:
            tmp.unlink()  # datasets writes the file itself (its own temporary file, moved to this name)
            dataset.map(fn, batched=True, cache_file_name=str(tmp), load_from_cache_file=False, desc=f"tokenize {split}")
    return dataset.map(fn, batched=True, cache_file_name=str(final), load_from_cache_file=True, desc=f"tokenize {split}")
