"""Frozen sentence embeddings for data checks (noise finder, diversity, cluster sampler).

A zoo text encoder (default ``minilm-l6``), mean pooling over real tokens, L2-normalised; computed
once per (model, max length, exact text list) and kept under ``cache_dir()/dataqc/embeddings``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import paths

DEFAULT_BACKBONE = "minilm-l6"


def cache_path(texts: list[str], backbone: str, max_length: int) -> Path:
    digest = hashlib.sha1()
    digest.update(f"{backbone}\0{max_length}\0{len(texts)}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return paths.cache_dir() / "dataqc" / "embeddings" / f"{digest.hexdigest()[:20]}.npy"


def embed_texts(texts: list[str], backbone: str = DEFAULT_BACKBONE, max_length: int = 128, batch_size: int = 64,
                desc: str = "embed") -> np.ndarray:
    """(n, d) float32 unit vectors, cached; batches sorted by length (less padding)."""
    path = cache_path(texts, backbone, max_length)
    if path.is_file():
        return np.load(path)
    import torch
    from tqdm.auto import tqdm

    from ..models.text import load_text_model
    from ..registry import POOLERS

    model, tokenizer, _ = load_text_model(backbone)
    model.eval()
    pool = POOLERS.get("mean")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", mininterval=10):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            vec = torch.nn.functional.normalize(pool(hidden, enc["attention_mask"]).float(), dim=-1)
            out[idx] = vec.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.rename(path)
    return out
