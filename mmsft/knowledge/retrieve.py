"""Retrieval over a KB, one registry entry per method: ``dense`` (cosine on the index; faiss when it
is installed and the KB is large, exact torch search otherwise), ``bm25`` (bm25s) and ``hybrid``
(reciprocal rank fusion of the two).

Every search takes per-query exclusions (the entries a training row was derived from, or that equal
it) and a KB-wide block list (entries equal to or made from validation / test rows), and fetches deep
enough that k hits remain after removing them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..registry import Registry
from .kb import KnowledgeBase

FAISS_MIN_ENTRIES = 50_000  # below this, exact torch search is as fast and has no extra dependency
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)


@dataclass(frozen=True)
class Hit:
    index: int  # position of the entry in the KB
    id: str
    score: float


RETRIEVERS: Registry[type] = Registry("retrieval method")


class Retriever:
    """Subclasses implement ``ranked(queries, depth) -> [[(entry index, score), ...]]`` best first."""

    def __init__(self, kb: KnowledgeBase, encoder: str = "minilm-l6", index: Optional[str] = None, query_max_length: int = 128):
        self.kb, self.encoder, self.index_folder, self.query_max_length = kb, encoder, index, query_max_length
        self.blocked: set[int] = set()
        self.query_seconds = 0.0
        self.queries = 0

    def ranked(self, queries: list[str], depth: int) -> list[list[tuple[int, float]]]:
        raise NotImplementedError

    def search(self, queries: list[str], k: int, exclude: Optional[list[set[int]]] = None) -> list[list[Hit]]:
        """Top ``k`` hits per query, excluded and blocked entries removed."""
        if not queries:
            return []
        exclude = exclude or [set() for _ in queries]
        depth = min(len(self.kb), k + len(self.blocked) + max(len(e) for e in exclude))
        tick = time.perf_counter()
        ranked = self.ranked(queries, depth)
        self.query_seconds += time.perf_counter() - tick
        self.queries += len(queries)
        out = []
        for hits, skip in zip(ranked, exclude):
            kept = [Hit(i, self.kb.entries[i].id, round(float(s), 4)) for i, s in hits if i not in skip and i not in self.blocked]
            out.append(kept[:k])
        return out

    @property
    def ms_per_query(self) -> float:
        return 1000 * self.query_seconds / max(self.queries, 1)


@RETRIEVERS.register("dense")
class Dense(Retriever):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .encoder import load_encoder
        from .index import load_index

        self.index = load_index(self.kb, self.encoder, self.index_folder)
        load_encoder(self.encoder)  # loaded here, so query timings are search only
        self._faiss = None

    def _search_faiss(self, queries: torch.Tensor, depth: int):
        import faiss

        if self._faiss is None:
            faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
            self._faiss = faiss.IndexFlatIP(self.index.embeddings.shape[1])
            self._faiss.add(self.index.embeddings.numpy())
        scores, ids = self._faiss.search(queries.numpy(), depth)
        return torch.from_numpy(scores), torch.from_numpy(ids)

    def ranked(self, queries, depth):
        from .encoder import load_encoder

        vectors = load_encoder(self.encoder).encode(queries, self.query_max_length, cache=len(queries) >= 256)
        try:
            import faiss  # noqa: F401

            use_faiss = len(self.kb) >= FAISS_MIN_ENTRIES
        except ImportError:
            use_faiss = False
        out = []
        for start in range(0, len(vectors), 1024):
            chunk = vectors[start : start + 1024]
            if use_faiss:
                scores, ids = self._search_faiss(chunk, depth)
            else:
                scores, ids = (chunk @ self.index.embeddings.T).topk(depth, dim=1)
            out += [list(zip(i.tolist(), s.tolist())) for i, s in zip(ids, scores)]
        return out


@RETRIEVERS.register("bm25")
class BM25(Retriever):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import bm25s

        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(self.kb.search_texts(), stopwords="en", show_progress=False), show_progress=False)

    def ranked(self, queries, depth):
        import bm25s

        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False, return_ids=False)
        ids, scores = self._bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if s > 0] for row_ids, row_scores in zip(ids, scores)]


@RETRIEVERS.register("hybrid")
class Hybrid(Retriever):
    """Reciprocal rank fusion: score = sum over methods of 1 / (60 + rank)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parts = [Dense(*args, **kwargs), BM25(*args, **kwargs)]

    def ranked(self, queries, depth):
        pool = min(len(self.kb), max(4 * depth, 20))
        fused: list[dict[int, float]] = [{} for _ in queries]
        for part in self.parts:
            for scores, hits in zip(fused, part.ranked(queries, pool)):
                for rank, (i, _) in enumerate(hits):
                    scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        return [sorted(s.items(), key=lambda kv: -kv[1])[:depth] for s in fused]


def build_retriever(kb: KnowledgeBase, method: str, encoder: str = "minilm-l6", index: Optional[str] = None,
                    query_max_length: int = 128) -> Retriever:
    return RETRIEVERS.get(method)(kb, encoder, index, query_max_length)
