"""From cell records to the matrix: one row per (source, target, method, adapter), means over seeds.

* ``rows``: ``accuracy_mean`` / ``accuracy_std`` (sample std over seeds; 0 for one seed), ``seeds``
  and the per-seed accuracies, macro-F1; ``source == target`` is the in-domain diagonal (a
  ``source_only`` model on its own test split).  Off the diagonal, ``transfer_gap`` = the target's
  in-domain accuracy (same adapter) minus this transfer accuracy, and for adaptation methods
  ``gain`` = accuracy minus ``source_only``'s on the same pair, with ``gain_std`` the spread of the
  per-seed paired differences (seed k of the method against seed k of source_only).
* ``summary``: per (adapter, method, group of pairs) the mean over the group's pairs, its spread over
  seeds, the mean gap and the mean gain over ``source_only`` with a verdict: *pays* when the paired
  gain exceeds twice its standard error over seeds, *hurts* when it is that far below zero, else
  *within seed noise*.  Groups: the pairs among the targets (the square, e.g. the 12 review pairs),
  and each outside source's pairs (SST-2 -> the review domains).
* ``best``: per pair and adapter, the method with the highest gain over ``source_only`` (paired by seed).
"""
from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean, stdev
from typing import Optional


def _std(values: list[float]) -> float:
    return stdev(values) if len(values) > 1 else 0.0


def observations(records: list[dict]) -> dict[tuple, dict[int, dict]]:
    """(source, target, method, adapter) -> {seed: score}; an adaptation cell counts for its own target only."""
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for record in records:
        cell = record["cell"]
        tasks = [cell["target"]] if cell["target"] else cell["evals"]
        for task in tasks:
            if task in record["scores"]:
                out[(cell["source"], task, cell["method"], cell["adapter"])][cell["seed"]] = record["scores"][task]
    return out


def build_rows(records: list[dict], methods: list[str], adapters: list[str]) -> list[dict]:
    obs = observations(records)
    order = {m: i for i, m in enumerate(methods)}
    rows = []
    for (source, target, method, adapter), by_seed in obs.items():
        seeds = sorted(by_seed)
        accs = [by_seed[s]["accuracy"] for s in seeds]
        rows.append({"source": source, "target": target, "method": method, "adapter": adapter,
                     "accuracy_mean": round(mean(accs), 4), "accuracy_std": round(_std(accs), 4), "seeds": seeds,
                     "accuracy_per_seed": [round(a, 4) for a in accs],
                     "f1_macro_mean": round(mean(by_seed[s]["f1_macro"] for s in seeds), 4), "n_test": by_seed[seeds[0]]["n"],
                     "in_domain": source == target})
    index = {(r["source"], r["target"], r["method"], r["adapter"]): r for r in rows}
    for row in rows:
        if row["in_domain"]:
            continue
        home = index.get((row["target"], row["target"], "source_only", row["adapter"]))
        row["transfer_gap"] = round(home["accuracy_mean"] - row["accuracy_mean"], 4) if home else None
        base = index.get((row["source"], row["target"], "source_only", row["adapter"]))
        if row["method"] != "source_only" and base:
            diffs = _paired(row, base)
            row["gain"] = round(mean(diffs), 4) if diffs else None
            row["gain_std"] = round(_std(diffs), 4) if diffs else None
    rows.sort(key=lambda r: (adapters.index(r["adapter"]) if r["adapter"] in adapters else 99, order.get(r["method"], 99),
                             r["source"], not r["in_domain"], r["target"]))
    return rows


def _paired(row: dict, base: dict) -> list[float]:
    a = dict(zip(row["seeds"], row["accuracy_per_seed"]))
    b = dict(zip(base["seeds"], base["accuracy_per_seed"]))
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def pair_groups(rows: list[dict], targets: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Off-diagonal pairs grouped: among the targets ("within"), and one group per outside source."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in sorted({(r["source"], r["target"]) for r in rows if not r["in_domain"]}):
        name = "pairs among the targets" if pair[0] in targets else f"{pair[0]} -> targets"
        groups[name].append(pair)
    return dict(groups)


def verdict(gain: Optional[float], std: Optional[float], n: int) -> str:
    if gain is None:
        return "no source_only baseline"
    if n < 2:
        return "one seed: no noise estimate"
    se = std / math.sqrt(n)
    if gain > 2 * se:
        return "pays"
    if gain < -2 * se:
        return "hurts"
    return "within seed noise (does not pay)"


def _group_stats(rows_by_key: dict, pairs: list[tuple[str, str]], method: str, adapter: str) -> Optional[dict]:
    rows = [rows_by_key.get((s, t, method, adapter)) for s, t in pairs]
    if any(r is None for r in rows):
        return None  # a partial group would not compare with the other methods' means
    seeds = sorted(set.intersection(*(set(r["seeds"]) for r in rows)))
    per_seed = [mean(dict(zip(r["seeds"], r["accuracy_per_seed"]))[s] for r in rows) for s in seeds]
    gaps = [r["transfer_gap"] for r in rows if r.get("transfer_gap") is not None]
    return {"rows": rows, "seeds": seeds, "per_seed": per_seed, "mean": mean(r["accuracy_mean"] for r in rows),
            "gap": mean(gaps) if len(gaps) == len(rows) else None}


def summarise(rows: list[dict], targets: list[str]) -> list[dict]:
    by_key = {(r["source"], r["target"], r["method"], r["adapter"]): r for r in rows}
    combos = list(dict.fromkeys((r["adapter"], r["method"]) for r in rows))
    out = []
    for group, pairs in pair_groups(rows, targets).items():
        for adapter, method in combos:
            stats = _group_stats(by_key, pairs, method, adapter)
            if stats is None:
                continue
            homes = [by_key.get((t, t, "source_only", adapter)) for t in dict.fromkeys(t for _, t in pairs)]
            entry = {"group": group, "adapter": adapter, "method": method, "pairs": len(pairs), "seeds": stats["seeds"],
                     "accuracy_mean": round(stats["mean"], 4), "accuracy_std_over_seeds": round(_std(stats["per_seed"]), 4),
                     "transfer_gap_mean": None if stats["gap"] is None else round(stats["gap"], 4),
                     "target_in_domain_mean": round(mean(h["accuracy_mean"] for h in homes), 4) if all(homes) else None}
            base = _group_stats(by_key, pairs, "source_only", adapter) if method != "source_only" else None
            if base is not None:
                b = dict(zip(base["seeds"], base["per_seed"]))
                diffs = [m - b[s] for s, m in zip(stats["seeds"], stats["per_seed"]) if s in b]
                gain, spread = (mean(diffs), _std(diffs)) if diffs else (None, None)
                entry.update({"gain_over_source_only": None if gain is None else round(gain, 4),
                              "gain_std_over_seeds": None if spread is None else round(spread, 4),
                              "verdict": verdict(gain, spread, len(diffs))})
            out.append(entry)
    return out


def best_per_pair(rows: list[dict]) -> list[dict]:
    """Per (adapter, pair): the method with the highest gain over source_only, paired by seed (a method run on
    fewer seeds than the baseline is compared on the seeds both have), with both accuracies on those seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if not r["in_domain"]:
            groups[(r["adapter"], r["source"], r["target"])].append(r)
    out = []
    for (adapter, source, target), candidates in groups.items():
        if len({r["method"] for r in candidates}) < 2:
            continue
        base = next((r for r in candidates if r["method"] == "source_only"), None)
        entry = {"adapter": adapter, "source": source, "target": target}
        if base is None:
            best = max(candidates, key=lambda r: r["accuracy_mean"])
            out.append({**entry, "best_method": best["method"], "best_accuracy": best["accuracy_mean"], "source_only_accuracy": None,
                        "gain": None, "gain_std": None, "seeds": best["seeds"]})
            continue
        best, best_gain, seeds = base, 0.0, list(base["seeds"])
        for row in candidates:
            diffs = _paired(row, base) if row is not base else []
            if diffs and mean(diffs) > best_gain:
                best, best_gain, seeds = row, mean(diffs), sorted(set(row["seeds"]) & set(base["seeds"]))

        def on(row: dict) -> float:
            per_seed = dict(zip(row["seeds"], row["accuracy_per_seed"]))
            return round(mean(per_seed[s] for s in seeds), 4)

        out.append({**entry, "best_method": best["method"], "best_accuracy": on(best), "source_only_accuracy": on(base),
                    "gain": round(best_gain, 4), "gain_std": best.get("gain_std") if best is not base else None, "seeds": seeds})
    return out
