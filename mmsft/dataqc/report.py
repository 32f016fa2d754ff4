"""The data-check report: ``report.md`` (verdicts first), PNG charts and ``check.json``."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .views import QCData


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return out + [""]


def _cut(text, n: int = 90) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# -- charts --------------------------------------------------------------------------------------
def balance_png(balance: dict, labels: list[str], out: Path) -> None:
    splits = list(balance["by_split"])
    show = labels if len(labels) <= 40 else sorted(labels, key=lambda n: -balance["by_split"][splits[0]][n])[:40]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(show) * max(1, len(splits)) / 2), 4))
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        ax.bar(np.arange(len(show)) + i * width, [balance["by_split"][split][n] for n in show], width, label=split)
    ax.set_xticks(np.arange(len(show)) + 0.4 - width / 2)
    ax.set_xticklabels([_cut(n, 24) for n in show], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rows" if "boxes" not in balance else "boxes")
    ax.set_title("Class counts per split" + (" (40 largest classes)" if len(show) < len(labels) else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def lengths_png(data: QCData, lengths: list[int], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for split in data.splits():
        if split == "dropped":
            continue
        ax.hist([lengths[it.id] for it in data.by_split(split)], bins=50, alpha=0.5, label=split, density=True)
    if data.max_length:
        ax.axvline(data.max_length, color="red", linestyle="--", label=f"max_length {data.max_length}")
    ax.set_xlabel(f"tokens ({data.backbone})")
    ax.set_ylabel("density")
    ax.set_title("Token lengths")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def detection_png(det: dict, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for split, v in det.items():
        a.hist(v["_per_image"], bins=range(0, max(v["_per_image"] + [1]) + 2), alpha=0.5, label=split)
        if v["_relative_area"]:
            b.hist(np.log10(np.clip(v["_relative_area"], 1e-6, 1)), bins=40, alpha=0.5, label=split)
    a.set_xlabel("boxes per image")
    b.set_xlabel("log10(box area / image area)")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- markdown ------------------------------------------------------------------------------------
def markdown(data: QCData, results: dict, verdicts: list[dict], images: list[str], command: str) -> str:
    lines = [f"# Data check: {data.task}", "", f"- Kind: {data.kind}; modality: {data.modality}; command: `{command}`"]
    for key, files in data.files.items():
        lines.append(f"- files.{key}: " + ", ".join(f"`{f}`" for f in files))
    split_counts = ", ".join(f"{s} {len(data.by_split(s))}" for s in data.splits())
    lines += [f"- Raw rows: {len(data.items)}; after the task's own cleaning and split: {split_counts}",
              f"- Task cleaning: {json.dumps({k: v for k, v in data.cleaning.items() if k != 'augment'})}"]
    lines += [f"- {note}" for note in data.notes] + ["", "## Verdicts: what to fix first", ""]
    for i, v in enumerate(verdicts, 1):
        lines.append(f"{i}. **[{v['severity']}] {v['title']}.** {v['detail']} *Fix:* {v['fix']}.")
    lines.append("")
    dup = results.get("duplicates")
    if dup:
        lines += ["## Leakage between splits (as the task configures them)", ""]
        rows = [[pair, f"{v['rows']} / {v['of']} ({100 * v['share']:.1f}%)", f"{dup['leakage']['exact_or_near'][pair]['rows']}"]
                for pair, v in dup["leakage"]["exact"].items()]
        lines += _table(["earlier -> later split", "later rows with an exact twin in earlier", "exact or near"], rows)
        if dup["file_overlap"]:
            lines += ["File overlap (distinct items in common):", ""]
            lines += _table(["file A (key)", "file B (key)", "common", "share of A", "share of B", "subset"],
                            [[f"{o['file_a']} ({o['key_a']})", f"{o['file_b']} ({o['key_b']})", o["common"], o["share_of_a"], o["share_of_b"], o["subset"] or "-"]
                             for o in dup["file_overlap"][:10]])
        ex = [e for pair in dup["leakage"]["exact"].values() for e in pair["examples"]][:5]
        if ex:
            lines += _table(["leaked item", "where"], [[_cut(e.get("text", e.get("image"))), "; ".join(f"{r['source']} ({r['split']})" for r in e["rows"])] for e in ex])
        lines += ["## Duplicates", "", f"Exact: {dup['exact']['groups']} groups, {dup['exact']['duplicate_rows']} extra rows. "
                  f"Near (not exact): {dup['near']['groups']} groups covering {dup['near']['rows']} rows.", ""]
        lines += _table(["scope", "rows", "duplicate groups", "extra rows"],
                        [[f"files.{k}", v["rows"], v["groups"], v["duplicate_rows"]] for k, v in dup["exact"]["by_file_key"].items()]
                        + [[f"split {k}", v["rows"], v["groups"], v["duplicate_rows"]] for k, v in dup["exact"]["by_split"].items()])
        if dup["exact"]["examples"]:
            lines += _table(["most repeated", "count", "labels"], [[_cut(e.get("text", e.get("image"))), e["count"], ", ".join(sorted({str(r['label']) for r in e['rows']}))]
                                                                   for e in dup["exact"]["examples"][:5]])
        if dup["near"]["examples"]:
            lines += ["Near-duplicate examples:", ""]
            lines += _table(["item", "rows"], [[_cut(e.get("text", e.get("image"))), "; ".join(f"{r['source']} ({r['split']}, {r['label']})" for r in e["rows"])]
                                               for e in dup["near"]["examples"][:5]])
        lines += ["## Conflicting labels", ""]
        for name, c in dup["conflicts"].items():
            lines.append(f"- {name}: {c['groups']} groups, {c['rows']} rows; label sets: {json.dumps(c['label_sets'])}")
        lines.append("")
        if dup["conflicts"]["exact"]["examples"]:
            lines += _table(["input", "labels (source)"], [[_cut(e.get("text", e.get("image"))), "; ".join(f"{r['label']} ({r['source']})" for r in e["rows"])]
                                                           for e in dup["conflicts"]["exact"]["examples"][:5]])
    noise = results.get("noise")
    if noise:
        lines += ["## Label-noise suspects (confident learning on frozen embeddings)", ""]
        if "skipped" in noise:
            lines += [f"Skipped: {noise['skipped']}", ""]
        else:
            lines += [f"Scored {noise['scored_rows']} rows (files other than test) with {noise['folds']}-fold out-of-fold logistic regression "
                      f"on {noise['backbone']} embeddings (accuracy {noise['oof_accuracy']:.3f}). Estimated mislabelled: {noise['suspects']} "
                      f"({100 * noise['suspect_share']:.1f}%). Top 20 (the full ranked list is in check.json):", ""]
            lines += _table(["#", "source", "text", "label", "suspected", "p(label)"],
                            [[i, s["source"], _cut(s["text"], 70), s["label"], s["suspected_label"], s["p_given"]] for i, s in enumerate(noise["listed"][:20], 1)])
    lengths = results.get("lengths")
    if lengths:
        lines += [f"## Lengths ({lengths['tokenizer']} tokens, max_length {lengths['max_length']})", ""]
        lines += _table(["split", "rows", "mean", "p50", "p95", "max", "truncated"],
                        [[s, v["tokens"]["count"], v["tokens"].get("mean"), v["tokens"].get("p50"), v["tokens"].get("p95"), v["tokens"].get("max"),
                          f"{v['truncated']} ({100 * v['truncated_share']:.1f}%)"] for s, v in lengths["by_split"].items()])
    bal = results.get("balance")
    if bal:
        lines += ["## Class balance", "", f"Train imbalance ratio (largest / smallest): {bal['imbalance_ratio']}", ""]
        splits = list(bal["by_split"])
        lines += _table(["class", *splits], [[name, *[bal["by_split"][s][name] for s in splits]] for name in data.labels])
    det = results.get("detection")
    if det:
        lines += ["## Detection", ""]
        lines += _table(["split", "images", "boxes", "no boxes", "boxes/image p50 / max", "small / medium / large", "rel. area p5 / p50 / p95"],
                        [[s, v["images"], v["boxes"], v["images_without_boxes"], f"{v['boxes_per_image'].get('p50')} / {v['boxes_per_image'].get('max')}",
                          " / ".join(str(v["size_buckets"][k]) for k in ("small", "medium", "large")),
                          " / ".join(str(v["relative_area"].get(k)) for k in ("p5", "p50", "p95"))] for s, v in det.items()])
    div = results.get("diversity")
    if div:
        lines += ["## Diversity", ""]
        if "text" in div:
            lines += _table(["split", "rows", "distinct-1", "distinct-2"], [[s, v["rows"], v["distinct_1"], v["distinct_2"]] for s, v in div["text"]["by_split"].items()])
        emb = div.get("embedding")
        if emb:
            lines += [f"k-means on embeddings: {emb['clusters']} clusters, mean label purity {emb['mean_cluster_purity']}, overall spread {emb['overall_spread']}.", ""]
            lines += _table(["class", "rows", "distinct-2", "spread", "effective clusters", "largest cluster share"],
                            [[n, v["rows"], div.get("text", {}).get("by_class", {}).get(n, {}).get("distinct_2", "-"), v["spread"], v["effective_clusters"], v["top_cluster_share"]]
                             for n, v in emb["by_class"].items()])
        if div.get("dialogue"):
            lines += [f"Dialogue: {json.dumps(div['dialogue'])}", ""]
        if div.get("image"):
            lines += _table(["split", "images", "distinct", "classes/image"], [[s, v["images"], v["distinct_images"], v["mean_classes_per_image"]] for s, v in div["image"]["by_split"].items()])
    if images:
        lines += ["## Charts", ""] + [f"![{Path(p).stem}]({p})" for p in images] + [""]
    return "\n".join(lines) + "\n"


def jsonable(obj):
    """Drop private keys (``_...``) and numpy types."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
