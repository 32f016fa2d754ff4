"""The dense encoder of KB indexes and queries: a zoo text encoder, mean-pooled, L2-normalised.

Loaded once per (name) per process.  Query embeddings of a whole split are cached on disk by
(encoder, max length, the exact texts), so repeated runs of a task do not re-encode their rows.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

from .. import paths
from ..atomic import save_safetensors


@lru_cache(maxsize=2)
def load_encoder(name: str) -> "Encoder":
    return Encoder(name)


class Encoder:
    def __init__(self, name: str):
        from ..registry import BACKBONE_FAMILIES

        self.name = name
        self.model, self.tokenizer, _ = BACKBONE_FAMILIES.get("text").loader(name)  # zoo name, folder or hub id
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def _encode(self, texts: list[str], max_length: int, batch_size: int) -> torch.Tensor:
        from ..registry import POOLERS

        pool = POOLERS.get("mean")
        out = torch.zeros(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(order), batch_size), desc="encode KB" if len(texts) > 5000 else "encode",
                          disable=len(texts) < 2000, mininterval=10, unit="batch"):
            picked = order[start : start + batch_size]
            enc = self.tokenizer([texts[i] for i in picked], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            states = self.model(**enc).last_hidden_state
            out[picked] = torch.nn.functional.normalize(pool(states, enc["attention_mask"], None).float(), dim=-1)
        return out

    def encode(self, texts: list[str], max_length: int = 128, batch_size: int = 64, cache: bool = False) -> torch.Tensor:
        """(n, dim) unit vectors; ``cache``: kept under the cache folder for the same texts."""
        if not cache:
            return self._encode(texts, max_length, batch_size)
        digest = hashlib.sha256(f"{self.name}\0{max_length}\0".encode())
        for text in texts:
            digest.update(text.encode("utf-8", "replace") + b"\0")
        path = paths.cache_dir() / "knowledge" / "queries" / f"{digest.hexdigest()[:24]}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            return load_file(str(path))["embeddings"]
        vectors = self._encode(texts, max_length, batch_size)
        save_safetensors(path, {"embeddings": vectors})
        return vectors

    def chunker(self, tokens: int, overlap: int):
        """A ``text -> passages`` function cutting at this encoder's token boundaries."""
        from .kb import chunk_text

        return lambda text: chunk_text(text, self.tokenizer, tokens, overlap)
