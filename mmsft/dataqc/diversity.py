"""Diversity: distinct-n per split and class, embedding spread and cluster coverage per class, and
dialogue shape (distinct intents, turn counts) for rows that carry turns.

- distinct-n = distinct word n-grams / all word n-grams (Li et al. 2016); low = repetitive phrasing.
- spread = mean cosine distance of a class's rows to the class centroid (0 = all the same sentence).
- cluster coverage: k-means (k ~ sqrt(n/2), at most 50) over all scored rows; per class, the
  effective number of clusters it occupies (exp of the entropy of its cluster histogram) and the
  share of its rows in its largest cluster.  A class living in one cluster is narrow.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from .views import QCData


def distinct_n(texts: list[str], n: int) -> float:
    grams, total = set(), 0
    for text in texts:
        tokens = text.lower().split()
        for i in range(len(tokens) - n + 1):
            grams.add(tuple(tokens[i : i + n]))
            total += 1
    return round(len(grams) / total, 4) if total else 0.0


def text_diversity(data: QCData) -> dict:
    out = {"by_split": {}, "by_class": {}}
    for split in [s for s in data.splits() if s != "dropped"]:
        texts = [it.text for it in data.by_split(split)]
        out["by_split"][split] = {"rows": len(texts), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}
    groups = defaultdict(list)
    for it in data.items:
        if it.file_key != "test":
            groups[it.label].append(it.text)
    for label in data.labels:
        texts = groups.get(label, [])
        out["by_class"][label] = {"rows": len(texts), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}
    return out


def cluster_ids(vectors: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = k or int(min(50, max(2, round(np.sqrt(len(vectors) / 2)))))
    k = min(k, len(vectors))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(vectors)


def text_clusters(texts: list[str], max_length: int = 128, backbone: str = "minilm-l6", seed: int = 0) -> list[int]:
    """k-means cluster id per text on frozen sentence embeddings (``train.sampler: cluster_balanced``)."""
    from .embed import embed_texts

    unique = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(unique)}
    ids = cluster_ids(embed_texts(unique, backbone, max_length, desc="embed (clusters)"), seed=seed)
    return [int(ids[row[t]]) for t in texts]


def embedding_diversity(data: QCData, item_ids: list[int], vectors: np.ndarray, seed: int = 0) -> dict:
    """Spread and cluster coverage per class over the given items and their unit vectors."""
    labels = np.array([str(data.items[i].label) for i in item_ids])
    clusters = cluster_ids(vectors, seed=seed)
    k = int(clusters.max()) + 1
    per_class = {}
    for label in data.labels:
        mask = labels == label
        if not mask.any():
            continue
        vec = vectors[mask]
        centroid = vec.mean(0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        hist = np.bincount(clusters[mask], minlength=k).astype(float)
        p = hist[hist > 0] / hist.sum()
        per_class[label] = {"rows": int(mask.sum()), "spread": round(float(1 - (vec @ centroid).mean()), 4),
                            "effective_clusters": round(float(np.exp(-(p * np.log(p)).sum())), 2),
                            "top_cluster_share": round(float(p.max()), 4)}
    sizes = np.bincount(clusters, minlength=k)
    purity = []
    for c in range(k):
        counts = Counter(labels[clusters == c])
        purity.append(counts.most_common(1)[0][1] / sizes[c] if sizes[c] else 0)
    return {"clusters": k, "cluster_sizes": sorted(sizes.tolist(), reverse=True), "mean_cluster_purity": round(float(np.mean(purity)), 4),
            "by_class": per_class, "overall_spread": round(float(1 - (vectors @ (vectors.mean(0) / max(np.linalg.norm(vectors.mean(0)), 1e-12))).mean()), 4)}


def dialogue_stats(data: QCData) -> dict | None:
    """For rows carrying ``extra['turns']`` (dialogue kinds): intents and turns per dialogue."""
    turns = [len(it.extra["turns"]) for it in data.items if isinstance(it.extra.get("turns"), list)]
    if not turns:
        return None
    intents = Counter(str(it.label) for it in data.items if "turns" in it.extra)
    return {"dialogues": len(turns), "distinct_intents": len(intents), "turns_mean": round(float(np.mean(turns)), 2),
            "turns_max": int(max(turns)), "turn_histogram": dict(sorted(Counter(turns).items()))}


def image_diversity(data: QCData) -> dict:
    """Distinct-image share per split (exact hashes) and classes per image."""
    from .duplicates import item_keys

    keys = item_keys(data)
    out = {}
    for split in data.splits():
        items = data.by_split(split)
        out[split] = {"images": len(items), "distinct_images": len({keys[it.id] for it in items}),
                      "mean_classes_per_image": round(float(np.mean([len(set(it.label)) if isinstance(it.label, list) else 1
                                                                     for it in items])), 2) if items else 0.0}
    return {"by_split": out}
