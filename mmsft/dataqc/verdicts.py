"""The short "what to fix first" list: one rule per finding, ordered by severity (leakage first)."""
from __future__ import annotations

from typing import Callable

from .views import QCData

SEVERITY = ("critical", "high", "medium", "low", "info")
RULES: list[Callable[[QCData, dict], list[dict]]] = []


def rule(fn):
    RULES.append(fn)
    return fn


def verdict(severity: str, title: str, detail: str, fix: str, key: str) -> dict:
    return {"severity": severity, "title": title, "detail": detail, "fix": fix, "key": key}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@rule
def leakage(data: QCData, r: dict) -> list[dict]:
    dup = r.get("duplicates")
    if not dup:
        return []
    out = []
    for overlap in dup["file_overlap"]:
        if overlap["key_a"] == overlap["key_b"] or max(overlap["share_of_a"], overlap["share_of_b"]) < 0.5:
            continue
        side, other = ("a", "b") if overlap["share_of_a"] >= overlap["share_of_b"] else ("b", "a")
        inner, outer, share = overlap[f"file_{side}"], overlap[f"file_{other}"], overlap[f"share_of_{side}"]
        how = "a subset of" if share >= 0.95 else f"{_pct(share)} contained in"
        out.append(verdict("critical", f"Nested files: {inner} ({overlap[f'key_{side}']}) is {how} {outer} ({overlap[f'key_{other}']})",
                           f"{overlap['common']} distinct texts occur in both; training on one and evaluating on the other leaks.",
                           "use one file and split it (files.all), or remove the overlap (--fix)", "leakage"))
    for pair, found in dup["leakage"]["exact"].items():
        if found["rows"]:
            a, b = pair.split("->")
            out.append(verdict("critical" if found["share"] >= 0.01 else "high",
                               f"Leakage {a} -> {b}: {found['rows']} of {found['of']} {b} rows ({_pct(found['share'])}) also occur in {a}",
                               f"exact duplicates (normalised text) sit on both sides of the {a}/{b} split as the task configures it; "
                               f"the {b} score overstates generalisation.", f"drop those rows from {a} (`--fix`), or deduplicate before splitting", "leakage"))
    for pair, found in dup["leakage"]["exact_or_near"].items():
        extra = found["rows"] - dup["leakage"]["exact"][pair]["rows"]
        if extra > 0:
            a, b = pair.split("->")
            share = extra / max(found["of"], 1)
            out.append(verdict("high" if share >= 0.01 else "medium", f"Near-duplicate leakage {a} -> {b}: {extra} more {b} rows ({_pct(share)})",
                               f"rows of {b} differ from a row of {a} only by punctuation, numbers or a few characters (Jaccard >= 0.8 of character 5-grams).",
                               f"drop the near duplicates from {a} (`--fix`)", "leakage"))
    return out


@rule
def label_conflicts(data: QCData, r: dict) -> list[dict]:
    dup = r.get("duplicates")
    if not dup:
        return []
    out, exact = [], dup["conflicts"]["exact"]
    policy = data.cleaning.get("policy")
    if exact["groups"]:
        handled = policy == "drop_conflicts"
        out.append(verdict("medium" if handled else "high", f"Conflicting labels: {exact['groups']} inputs occur with different labels ({exact['rows']} rows)",
                           "the same (normalised) input carries two or more labels, e.g. " + ", ".join(list(exact["label_sets"])[:3])
                           + (". The task drops them (dedupe: drop_conflicts)." if handled else "; a model cannot get both right."),
                           "resolve by majority vote or drop them (`--fix`, or data.dedupe: drop_conflicts)", "conflicts"))
    near_extra = dup["conflicts"]["near"]["groups"]
    if near_extra:
        out.append(verdict("medium", f"Near-identical inputs with different labels: {near_extra} groups ({dup['conflicts']['near']['rows']} rows)",
                           "inputs that differ only slightly carry different labels (check the examples in the report).",
                           "review the examples; relabel or drop", "conflicts"))
    return out


@rule
def label_noise(data: QCData, r: dict) -> list[dict]:
    noise = r.get("noise")
    if not noise or "suspects" not in noise or not noise["suspects"]:
        return []
    share = noise["suspect_share"]
    severity = "high" if share >= 0.03 else "medium" if share >= 0.01 else "low"
    pairs = ", ".join(list(noise["top_pairs"])[:3])
    return [verdict(severity, f"Label-noise suspects: about {noise['suspects']} rows ({_pct(share)}) look mislabelled",
                    f"out-of-fold accuracy of a linear probe on frozen {noise['backbone']} embeddings is {noise['oof_accuracy']:.3f}; "
                    f"most frequent suspected swaps: {pairs}.", "review the ranked list in check.json (noise.listed) and relabel", "noise")]


@rule
def duplicates(data: QCData, r: dict) -> list[dict]:
    dup = r.get("duplicates")
    if not dup or not dup["exact"]["duplicate_rows"]:
        return []
    out = []
    survived = sum(v["duplicate_rows"] for k, v in dup["exact"]["by_split"].items() if k != "dropped")
    raw = sum(v["duplicate_rows"] for v in dup["exact"]["by_file_key"].values())
    files = ", ".join(f"files.{k}: {v['duplicate_rows']}" for k, v in dup["exact"]["by_file_key"].items() if v["duplicate_rows"])
    removed = data.cleaning.get("duplicates_removed", 0) + data.cleaning.get("conflict_rows_removed", 0)
    if raw:
        out.append(verdict("low" if removed else "medium", f"Exact duplicates inside the source files: {raw} extra rows ({files})",
                           f"the task's dedupe ('{data.cleaning.get('policy', '?')}') removes {removed} rows before splitting.",
                           "keep the task's dedupe on" if removed else "deduplicate (`--fix`, or data.dedupe: exact where the kind has it)", "duplicates"))
    if survived:
        share = survived / max(sum(1 for it in data.items if it.split != "dropped"), 1)
        out.append(verdict("medium" if share >= 0.005 else "low", f"Duplicates left inside splits after the task's cleaning: {survived} rows",
                           "; ".join(f"{k}: {v['duplicate_rows']}" for k, v in dup["exact"]["by_split"].items() if v["duplicate_rows"] and k != "dropped")
                           + " (the task only dedupes the files it splits, and keeps same-text rows whose labels differ).",
                           "deduplicate every split (`--fix`)", "duplicates"))
    return out


@rule
def truncation(data: QCData, r: dict) -> list[dict]:
    lengths = r.get("lengths")
    if not lengths or not lengths.get("max_length"):
        return []
    train = lengths["by_split"].get("train", {})
    share = train.get("truncated_share", 0)
    if share < 0.01:
        return []
    return [verdict("medium" if share >= 0.05 else "low", f"Truncation: {_pct(share)} of train rows exceed max_length {lengths['max_length']} tokens",
                    f"train token lengths p50 {train['tokens']['p50']}, p95 {train['tokens']['p95']}, max {train['tokens']['max']} ({lengths['tokenizer']}).",
                    f"raise model.max_length to about {train['tokens']['p95']} or accept the cut", "lengths")]


@rule
def balance(data: QCData, r: dict) -> list[dict]:
    bal = r.get("balance")
    if not bal:
        return []
    out = []
    if bal["missing_in_train"]:
        out.append(verdict("high", f"Classes without train rows: {', '.join(bal['missing_in_train'][:5])}",
                           "the model can never predict them.", "add data or drop the labels", "balance"))
    ratio = bal["imbalance_ratio"] or 1
    if ratio >= 3:
        out.append(verdict("medium" if ratio >= 10 else "low", f"Class imbalance: largest/smallest = {ratio:g} in train",
                           f"largest '{bal['largest']}', smallest '{bal['smallest']}'.",
                           "train.sampler: class_balanced, or loss.class_weights: balanced, and watch macro-F1" if data.modality == "text"
                           else "collect more of the small classes, or oversample the images that hold them", "balance"))
    return out


@rule
def diversity(data: QCData, r: dict) -> list[dict]:
    div = r.get("diversity", {}).get("embedding")
    if not div:
        return []
    narrow = [name for name, v in div["by_class"].items() if v["rows"] >= 20 and v["top_cluster_share"] >= 0.9]
    if not narrow:
        return []
    return [verdict("low", f"Narrow classes: {len(narrow)} classes have >= 90% of their rows in one embedding cluster",
                    "e.g. " + ", ".join(narrow[:5]) + "; their phrasing varies little.",
                    "augment them (mmsft data augment) or collect more varied examples", "diversity")]


@rule
def detection(data: QCData, r: dict) -> list[dict]:
    det = r.get("detection")
    if not det:
        return []
    out = []
    empty = sum(v["images_without_boxes"] for v in det.values())
    if empty:
        out.append(verdict("low", f"{empty} images without boxes", "background images teach the detector what is not an object; check they are intended.",
                           "keep if intended, else label them", "detection"))
    small = sum(v["size_buckets"]["small"] for v in det.values())
    boxes = sum(v["boxes"] for v in det.values())
    if boxes and small / boxes >= 0.3:
        out.append(verdict("medium", f"Small objects: {_pct(small / boxes)} of boxes are under 32x32 px",
                           "small boxes shrink further at the training resolution.", "train at a larger size or crop tiles", "detection"))
    return out


def make_verdicts(data: QCData, results: dict) -> list[dict]:
    found = [v for fn in RULES for v in fn(data, results)]
    found.sort(key=lambda v: (SEVERITY.index(v["severity"]), 0 if v["key"] == "leakage" else 1))
    if not any(v["severity"] in ("critical", "high", "medium") for v in found):
        found.append(verdict("info", "No blocking problem found", "nothing above low severity.", "-", "none"))
    return found
