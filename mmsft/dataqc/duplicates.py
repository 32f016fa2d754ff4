"""Exact and near duplicates, cross-split leakage, file overlap (nested files) and conflicting labels.

Texts: exact = equal after lower-casing and collapsing white space (the task's own ``dedupe`` key);
near = Jaccard >= 0.8 between the sets of character 5-grams of the text with punctuation dropped,
found with MinHash + LSH (64 hashes, 16 bands) and then verified exactly.  Images: exact = same
bytes (MD5); near = 64-bit difference hash (dHash) within Hamming distance 4.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from itertools import combinations
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..data.splits import normalise
from .views import QCData

NEAR_JACCARD = 0.8
DHASH_BITS = 4
_PUNCT = re.compile(r"[^\w ]+")


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return [g for g in out.values() if len(g) > 1]


# -- keys ----------------------------------------------------------------------------------------
def text_key(text: str) -> str:
    return normalise(text)


def loose_text(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def shingles(text: str, k: int = 5) -> np.ndarray:
    """Hashes (uint64) of the distinct character k-grams of the loosely normalised text."""
    data = np.frombuffer(loose_text(text).ljust(k).encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    n = len(data) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        h = h * np.uint64(257) + data[j : j + n]
    return np.unique(h)


def image_md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def dhash(path, size: int = 8) -> int:
    """Difference hash: sign of horizontal gradients of a (size+1) x size grey thumbnail."""
    from PIL import Image

    with Image.open(path) as im:
        grey = np.asarray(im.convert("L").resize((size + 1, size), Image.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


# -- grouping ------------------------------------------------------------------------------------
def exact_groups(data: QCData) -> dict[str, list[int]]:
    """key -> item ids for every key shared by 2+ items (text key, or image MD5)."""
    keys = item_keys(data)
    groups = defaultdict(list)
    for item in data.items:
        groups[keys[item.id]].append(item.id)
    return {k: ids for k, ids in groups.items() if len(ids) > 1}


def item_keys(data: QCData) -> list[str]:
    if data.modality == "image":
        cache = getattr(data, "_md5", None)
        if cache is None:
            cache = [image_md5(it.image) for it in tqdm(data.items, desc="hash images", mininterval=5)]
            data._md5 = cache
        return cache
    return [text_key(it.text) for it in data.items]


def near_groups(data: QCData, threshold: float = NEAR_JACCARD, num_hashes: int = 64, bands: int = 16,
                seed: int = 0) -> list[list[int]]:
    """Clusters (item ids) of near-duplicate items that are NOT all one exact-duplicate group."""
    keys = item_keys(data)
    unique = list(dict.fromkeys(keys))  # one representative per exact key
    index = {k: i for i, k in enumerate(unique)}
    first_item = {}
    for item in data.items:
        first_item.setdefault(keys[item.id], item)
    uf = UnionFind(len(unique))
    if data.modality == "image":
        hashes = [dhash(first_item[k].image) for k in tqdm(unique, desc="dhash images", mininterval=5)]
        for a, b in combinations(range(len(unique)), 2):
            if bin(hashes[a] ^ hashes[b]).count("1") <= DHASH_BITS:
                uf.union(a, b)
    else:
        _minhash_union([first_item[k].text for k in unique], uf, threshold, num_hashes, bands, seed)
    members = defaultdict(list)
    for item in data.items:
        members[index[keys[item.id]]].append(item.id)
    return [sorted(i for u in group for i in members[u]) for group in uf.groups()]


def _minhash_union(texts: list[str], uf: UnionFind, threshold: float, num_hashes: int, bands: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_hashes, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_hashes, dtype=np.uint64)
    sets, sigs = [], np.empty((len(texts), num_hashes), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, text in enumerate(tqdm(texts, desc="minhash", mininterval=5, disable=len(texts) < 5000)):
            sh = shingles(text)
            sets.append(sh)
            sigs[i] = ((a[:, None] * sh[None, :] + b[:, None]) >> np.uint64(32)).min(axis=1)
    rows = num_hashes // bands
    for band in range(bands):
        buckets = defaultdict(list)
        block = sigs[:, band * rows : (band + 1) * rows]
        for i, key in enumerate(map(bytes, block)):
            buckets[key].append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            pairs = combinations(members, 2) if len(members) <= 50 else ((members[0], m) for m in members[1:])
            for x, y in pairs:
                if uf.find(x) == uf.find(y):
                    continue
                inter = np.intersect1d(sets[x], sets[y], assume_unique=True).size
                if inter / (sets[x].size + sets[y].size - inter) >= threshold:
                    uf.union(x, y)


# -- analyses ------------------------------------------------------------------------------------
def _example(data: QCData, ids: list[int], limit: int = 4) -> dict:
    items = [data.items[i] for i in ids]
    show = items[0].text[:160] if data.modality == "text" else str(items[0].image)
    return {"text" if data.modality == "text" else "image": show,
            "rows": [{"source": it.source, "file_key": it.file_key, "split": it.split, "label": it.label} for it in items[:limit]],
            "count": len(items)}


def within(data: QCData, groups: list[list[int]], scope: Callable) -> dict:
    """Per scope value (file key or split): rows, duplicate groups and extra rows inside it."""
    out = {}
    totals = Counter(scope(it) for it in data.items)
    for name, total in totals.items():
        out[name] = {"rows": total, "groups": 0, "duplicate_rows": 0}
    for ids in groups:
        per = Counter(scope(data.items[i]) for i in ids)
        for name, n in per.items():
            if n > 1:
                out[name]["groups"] += 1
                out[name]["duplicate_rows"] += n - 1
    return out


def leakage(data: QCData, groups: list[list[int]], max_examples: int) -> dict:
    """For each ordered split pair (earlier, later): rows of the later split whose duplicate sits in
    the earlier one.  Uses effective splits (after the task's own cleaning); dropped rows are ignored."""
    order = [s for s in ("train", "validation", "test") if any(it.split == s for it in data.items)]
    out = {}
    for i, j in combinations(range(len(order)), 2):
        a, b = order[i], order[j]
        leaked, examples = set(), []
        for ids in groups:
            in_a = [k for k in ids if data.items[k].split == a]
            in_b = [k for k in ids if data.items[k].split == b]
            if in_a and in_b:
                leaked.update(in_b)
                if len(examples) < max_examples:
                    examples.append(_example(data, in_a[:2] + in_b[:2]))
        n_b = sum(1 for it in data.items if it.split == b)
        out[f"{a}->{b}"] = {"rows": len(leaked), "of": n_b, "share": round(len(leaked) / max(n_b, 1), 4), "examples": examples}
    return out


def file_overlap(data: QCData) -> list[dict]:
    """Pairs of source files sharing texts/images: how much of each file occurs in the other.
    ``subset`` marks a file whose distinct items (>= 95%) occur in the other (nested files)."""
    keys = item_keys(data)
    per_file = defaultdict(set)
    for item in data.items:
        per_file[item.source.rsplit(":", 1)[0] if data.modality == "text" else item.file_key].add(keys[item.id])
    key_of = {}
    for item in data.items:
        key_of.setdefault(item.source.rsplit(":", 1)[0] if data.modality == "text" else item.file_key, item.file_key)
    out = []
    for fa, fb in combinations(sorted(per_file), 2):
        common = len(per_file[fa] & per_file[fb])
        if not common:
            continue
        share_a, share_b = common / len(per_file[fa]), common / len(per_file[fb])
        out.append({"file_a": fa, "key_a": key_of[fa], "file_b": fb, "key_b": key_of[fb], "common": common,
                    "share_of_a": round(share_a, 4), "share_of_b": round(share_b, 4),
                    "subset": fa if share_a >= 0.95 else fb if share_b >= 0.95 else None})
    return sorted(out, key=lambda r: -r["common"])


def conflicts(data: QCData, groups: list[list[int]], max_examples: int, exclude: frozenset = frozenset()) -> dict:
    """Groups whose items carry different labels (text tasks: the label is unknowable for that input).
    Groups touching an ``exclude`` id (already reported as exact conflicts) are skipped."""
    found = []
    for ids in groups:
        if exclude and exclude.intersection(ids):
            continue
        labels = {str(data.items[i].label) for i in ids}
        if len(labels) > 1:
            found.append(ids)
    by_pair = Counter(" | ".join(sorted({str(data.items[i].label) for i in ids})) for ids in found)
    return {"groups": len(found), "rows": sum(len(g) for g in found),
            "label_sets": dict(by_pair.most_common(10)),
            "examples": [_example(data, ids) for ids in found[:max_examples]],
            "_ids": [sorted(g) for g in found]}


def analyse(data: QCData, near: bool = True, max_examples: int = 8) -> dict:
    """Every duplicate-related finding of the report in one dict (plus item-id lists for --fix)."""
    exact = list(exact_groups(data).values())
    near_list = near_groups(data) if near else []
    result = {
        "exact": {"groups": len(exact), "duplicate_rows": sum(len(g) - 1 for g in exact),
                  "by_file_key": within(data, exact, lambda it: it.file_key),
                  "by_file": within(data, exact, lambda it: it.source.rsplit(":", 1)[0]) if data.modality == "text" else {},
                  "by_split": within(data, exact, lambda it: it.split),
                  "examples": [_example(data, g) for g in sorted(exact, key=len, reverse=True)[:max_examples]]},
        "near": {"groups": len(near_list), "rows": sum(len(g) for g in near_list),
                 "by_split": within(data, near_list, lambda it: it.split),
                 "examples": [_example(data, g) for g in near_list[:max_examples]]},
        "leakage": {"exact": leakage(data, exact, max_examples), "exact_or_near": leakage(data, exact + near_list, max_examples)},
        "file_overlap": file_overlap(data),
        "_groups": {"exact": exact, "near": near_list},
    }
    exact_conflicts = conflicts(data, exact, max_examples)
    seen = frozenset(i for ids in exact_conflicts["_ids"] for i in ids)
    result["conflicts"] = {"exact": exact_conflicts, "near": conflicts(data, near_list, max_examples, exclude=seen)}
    return result
