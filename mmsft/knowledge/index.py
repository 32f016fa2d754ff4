"""Dense KB indexes on disk: ``embeddings.safetensors`` + ``ids.json`` + ``index.json`` (encoder name,
content hash, count, dimension, build seconds), written as one atomic folder.

An index is used only when it matches its KB and encoder.  When the KB's content changed it is
rebuilt (with a message), never silently used; an index built with another encoder is an error
(``UserError``, exit 2) for a folder the user named -- rebuilding would quietly switch the model --
and is rebuilt in the cache, whose folders are named by encoder.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import paths
from ..atomic import atomic_folder, save_safetensors, write_json
from ..errors import UserError
from .kb import KnowledgeBase

FILES = ("embeddings.safetensors", "ids.json", "index.json")


@dataclass
class DenseIndex:
    folder: Path
    embeddings: torch.Tensor  # (n, dim) unit vectors, entry order
    meta: dict
    rebuilt: bool = False


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[-80:] or "kb"


def default_folder(kb: KnowledgeBase, encoder: str) -> Path:
    return paths.cache_dir() / "knowledge" / "index" / f"{slug(kb.name)}--{slug(encoder)}"


def read_meta(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return None


def stale_reason(folder: Path, kb: KnowledgeBase, encoder: str) -> Optional[str]:
    """Why the index in ``folder`` cannot serve ``kb`` with ``encoder`` (None: it can)."""
    meta = read_meta(folder)
    if meta is None or not all((folder / f).is_file() for f in FILES):
        return "no index built yet"
    if meta.get("encoder") != encoder:
        return f"built with encoder '{meta.get('encoder')}', not '{encoder}'"
    if meta.get("content_hash") != kb.content_hash or meta.get("count") != len(kb):
        return "the KB's content changed since it was built"
    return None


def build_index(kb: KnowledgeBase, encoder: str, folder: Path, batch_size: int = 64, max_length: int = 256) -> DenseIndex:
    """Encode every entry's passage and write the index folder atomically (replacing an old one)."""
    from .encoder import load_encoder

    folder = Path(folder)
    if read_meta(folder) is None and (folder.is_file() or (folder.is_dir() and any(folder.iterdir()))):
        raise UserError("the folder holds files but no index (index.json): not replacing it", where=str(folder),
                        expected="an index folder written by `mmsft kb build`, or a new folder")
    tick = time.perf_counter()
    model = load_encoder(encoder)
    vectors = model.encode(kb.search_texts(), max_length=max_length, batch_size=batch_size)
    seconds = round(time.perf_counter() - tick, 2)
    meta = {"kb": kb.name, "origin": kb.origin, "encoder": encoder, "content_hash": kb.content_hash, "count": len(kb),
            "dim": int(vectors.shape[1]), "max_length": max_length, "build_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with atomic_folder(folder, replace=True) as tmp:
        save_safetensors(tmp / "embeddings.safetensors", {"embeddings": vectors})
        write_json(tmp / "ids.json", [e.id for e in kb.entries], indent=None)
        write_json(tmp / "index.json", meta)
    return DenseIndex(folder, vectors, meta, rebuilt=True)


def load_index(kb: KnowledgeBase, encoder: str, folder: Optional[str | Path] = None, replace: bool = False) -> DenseIndex:
    """The index of ``kb`` for ``encoder``: read when current, rebuilt when stale.  ``folder`` is a
    folder the user named (default: the cache); ``replace`` allows rebuilding one of another encoder."""
    from safetensors.torch import load_file

    named = folder is not None
    folder = Path(folder).expanduser() if named else default_folder(kb, encoder)
    reason = stale_reason(folder, kb, encoder)
    meta = read_meta(folder)
    if reason and named and meta and meta.get("encoder") != encoder and not replace:
        raise UserError(f"the index was built with encoder '{meta.get('encoder')}', not '{encoder}'", where=str(folder),
                        expected=f"--encoder {meta.get('encoder')}, another folder, or a rebuild (mmsft kb build --replace)")
    if reason:
        if meta is not None:
            print(f"[mmsft] index {folder} is stale ({reason}): rebuilding")
        return build_index(kb, encoder, folder)
    embeddings = load_file(str(folder / "embeddings.safetensors"))["embeddings"]
    ids = json.loads((folder / "ids.json").read_text())
    if len(ids) != len(kb) or ids[:1] != [kb.entries[0].id] or ids[-1:] != [kb.entries[-1].id] or embeddings.shape[0] != len(kb):
        print(f"[mmsft] index {folder} does not list the KB's entries: rebuilding")
        return build_index(kb, encoder, folder)
    return DenseIndex(folder, embeddings, meta)
