"""Knowledge injection on real KBs: does each module beat the same adapter without knowledge?

    nice -n 19 python benchmarks/knowledge.py                  # everything below (hours on a 2-core CPU)
    python benchmarks/knowledge.py --quick                     # small slices, 1 seed: checks the script end to end
    python benchmarks/knowledge.py --tasks finance_sentiment --no-reply   # one task (a second process can take another)

Classification (``medical_abstracts`` + ICD-10-CM, ``finance_sentiment`` + Loughran-McDonald,
``banking77_intent`` + intent names / its own labelled examples): each module (``retrieved_segments``,
``knowledge_adapter``, ``entity_memory``) against the same adapter without knowledge, at 100% and 10%
of train, 3 seeds.  The adapter is ``frozen`` (MiniLM-L6 frozen, head and modules train): it is the one
that makes 3 tasks x 4 arms x 2 fractions x 3 seeds affordable on a CPU, because a frozen backbone's
features are computed once per cell and shared by its seeds (``knowledge_cells.py``).  Retrieval
cost (index build seconds, ms per query) and the step slow-down of the uncached model are measured.

Replies (``customer_service_reply``, SmolLM2-135M + LoRA, the generation benchmark's subset and
budget): ROUGE-L, BLEU and groundedness without and with the policy KB (the training replies).  The
run without the KB is scored against the passages the KB run retrieved for the same test rows, so
both are measured against the same knowledge.

Every finished seed / reply stage is saved under ``--work``/stages and reused (resume) unless
``--fresh``; reply stages run in their own process.  Writes ``knowledge.{md,json,png}`` to ``--out``
(``--quick``: runs/bench-knowledge-quick).  No tuning on test: settings are fixed below, early
stopping watches validation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, write_json  # noqa: E402

THREAD = ["train.threads=1", "train.device=cpu"]
MODULES = ["retrieved_segments", "knowledge_adapter", "entity_memory"]
FLAGS = "[negative, positive, uncertainty, litigious, constraining]"
TASKS = {  # task -> (KB description, module -> overrides); the baseline ("none") has none
    "medical_abstracts": ("ICD-10-CM (95,622 codes)", {
        "retrieved_segments": ["knowledge={kb: icd10, retrieval: {method: hybrid, k: 3, budget: 48}}"],
        "knowledge_adapter": ["model.modules=[{type: knowledge_adapter, options: {kb: icd10, objective: field, targets: [chapter]}}]"],
        "entity_memory": ["knowledge={kb: icd10, inject: []}", "model.modules=[{type: entity_memory}]"]}),
    "finance_sentiment": ("Loughran-McDonald (3,861 flagged words)", {
        "retrieved_segments": ["knowledge={kb: loughran_mcdonald, retrieval: {method: bm25, k: 4, budget: 32}}"],
        "knowledge_adapter": ["model.modules=[{type: knowledge_adapter, options: {kb: loughran_mcdonald, objective: flags, "
                              f"input: id, targets: {FLAGS}}}}}]"],
        "entity_memory": ["knowledge={kb: loughran_mcdonald, inject: []}", "model.modules=[{type: entity_memory}]"]}),
    "banking77_intent": ("its training examples per intent (task_labels) / the 77 intent names", {
        "retrieved_segments": ["knowledge={kb: task_labels, retrieval: {method: hybrid, k: 3, budget: 48}}"],
        "knowledge_adapter": ["model.modules=[{type: knowledge_adapter, options: {kb: banking77_intents, objective: field, targets: [intent]}}]"],
        "entity_memory": ["knowledge={kb: banking77_intents, inject: [], linking: {fill: 3}}", "model.modules=[{type: entity_memory}]"]}),
}
REPLY_TASK = "customer_service_reply"
REPLY_KEYS = ("task", "kb", "rouge_l", "bleu", "hallucinated_placeholder_rate", "supported_content_share")  # the rows schema
REPLY_KB = ["knowledge={kb: task_replies, retrieval: {method: hybrid, k: 1, budget: 192}}", "model.max_length=576"]
GROUNDED = ("supported_content_share", "hallucinated_placeholder_rate", "knowledge_f1", "supported_placeholder_share")


def overrides(task: str, arm: str, quick: bool) -> list[str]:
    """The arm's overrides; ``retrieved_segments`` grows model.max_length by its budget so the text keeps its tokens."""
    from mmsft.spec import build_run_config

    extra = [] if arm == "none" else list(TASKS[task][1][arm])
    if arm == "retrieved_segments":
        budget = int(extra[0].split("budget: ")[1].split("}")[0])
        extra.append(f"model.max_length={build_run_config(task, 'frozen').model.max_length + budget}")
    if quick:
        extra = [e.replace("type: knowledge_adapter, options: {", "type: knowledge_adapter, options: {steps: 20, ") for e in extra]
        extra += ["train.epochs=2"]
    return [*THREAD, *extra]


# -- classification ----------------------------------------------------------------------------------
def run_cells(tasks, arms, fractions, seeds, quick: bool, stages: Path, fresh: bool) -> list[dict]:
    from knowledge_cells import cell, train_seed

    from mmsft.spec import build_run_config

    runs = []
    for task in tasks:
        for arm in ["none", *arms]:
            for fraction in fractions:
                paths = {s: stages / f"cls-{task}-{arm}-{fraction:g}-{s}.json" for s in seeds}
                todo = [s for s, p in paths.items() if fresh or not p.is_file()]
                built = cell(build_run_config(task, "frozen", overrides(task, arm, quick)), arm, fraction, quick) if todo else None
                for seed in seeds:
                    if seed in todo:
                        row = {"task": task, "module": arm, "fraction": fraction, **train_seed(built, arm, seed), **built.costs,
                               "check_max_abs_diff": built.check, "load_before": round(os.getloadavg()[0], 2)}
                        write_json(paths[seed], row)
                    row = json.loads(paths[seed].read_text())
                    print(json.dumps({k: v for k, v in row.items() if k != "pretraining"}), flush=True)
                    runs.append(row)
    return runs


def retrieval_costs(tasks, quick: bool) -> list[dict]:
    """Per KB: entries, index build seconds (as recorded when built), ms per query over 200 test rows."""
    from mmsft.knowledge.index import default_folder, read_meta
    from mmsft.knowledge.inject import TaskKnowledge
    from mmsft.registry import KINDS
    from mmsft.spec import build_run_config

    out = []
    for task in tasks:
        for arm in ("retrieved_segments", "entity_memory"):
            cfg = build_run_config(task, "frozen", overrides(task, arm, quick))
            kind = KINDS.get(cfg.kind)
            rows = kind.knowledge_rows(cfg, kind.load_data(cfg))
            know = TaskKnowledge(cfg.knowledge, rows, cfg.name)
            tick = time.perf_counter()
            know.entity_vectors if arm == "entity_memory" else know.retriever  # noqa: B018  (loads or builds the index)
            load_s = round(time.perf_counter() - tick, 2)
            dense = arm == "entity_memory" or cfg.knowledge.retrieval.method != "bm25"
            meta = read_meta(default_folder(know.kb, cfg.knowledge.retrieval.encoder)) if dense else {"build_seconds": load_s}
            queries = rows["test"][:200]
            if arm == "retrieved_segments":
                know.search(queries, cache=False)
                ms = round(know.retriever.ms_per_query, 2)
            else:
                tick_link = time.perf_counter()
                know.links(queries)
                ms = round(1000 * (time.perf_counter() - tick_link) / len(queries), 3)
            out.append({"task": task, "module": arm, "kb": know.kb.name, "entries": len(know.kb), "blocked_held_out": len(know.blocked),
                        "method": "alias linking" if arm == "entity_memory" else cfg.knowledge.retrieval.method,
                        "index_build_s": (meta or {}).get("build_seconds"), "load_s": load_s, "ms_per_query": ms})
    return out


def staged_costs(tasks, quick: bool, stages: Path, fresh: bool) -> list[dict]:
    """Retrieval costs, saved as a stage like the cells (a rebuild of the ICD-10 index alone takes minutes)."""
    path = stages / "costs.json"
    saved = [] if fresh or not path.is_file() else json.loads(path.read_text())
    if {c["task"] for c in saved} != set(tasks):
        saved = retrieval_costs(tasks, quick)
        write_json(path, saved)
    return saved


def seed_stages(report: Path, stages: Path) -> int:
    """Write the classification cells and costs of a committed ``knowledge.json`` as stage files where none exist,
    so a new machine adds the reply runs to a report without re-training its 72 cells; returns how many were seeded."""
    data = json.loads(report.read_text())
    seeded = 0
    for row in data["runs"]:
        path = stages / f"cls-{row['task']}-{row['module']}-{row['fraction']:g}-{row['seed']}.json"
        if not path.is_file():
            write_json(path, row)
            seeded += 1
    costs = bool(data.get("costs")) and not (stages / "costs.json").is_file()
    if costs:
        write_json(stages / "costs.json", data["costs"])
    if seeded or costs:  # the provenance lives with the stages, so a later invocation still reports it
        before = carried_over(stages) or {"cells": 0, "costs": False}
        write_json(stages / "carried.json", {"from": str(report), "cells": before["cells"] + seeded, "costs": before["costs"] or costs})
    return seeded


def carried_over(stages: Path) -> dict | None:
    """What ``seed_stages`` put into these stages ({from, cells, costs}), or None."""
    path = stages / "carried.json"
    return json.loads(path.read_text()) if path.is_file() else None


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        for fraction in sorted({r["fraction"] for r in runs if r["task"] == task}, reverse=True):
            base = [r for r in runs if r["task"] == task and r["fraction"] == fraction and r["module"] == "none"]
            for module in MODULES:
                group = [r for r in runs if r["task"] == task and r["fraction"] == fraction and r["module"] == module]
                if not group or not base:
                    continue
                for metric in ("accuracy", "f1_macro"):
                    v, b = [r[metric] for r in group], [r[metric] for r in base]
                    rows.append({"task": task, "module": module, "fraction": fraction, "metric": metric,
                                 "value_mean": round(statistics.mean(v), 4), "value_std": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
                                 "baseline_mean": round(statistics.mean(b), 4), "baseline_std": round(statistics.stdev(b), 4) if len(b) > 1 else 0.0,
                                 "seeds": len(group)})
    return rows


def pays(row: dict) -> bool:
    """≥ 2 points above the baseline and beyond 2 std (the larger of the two arms')."""
    gain = row["value_mean"] - row["baseline_mean"]
    return gain >= 0.02 and gain > 2 * max(row["value_std"], row["baseline_std"])


# -- replies -------------------------------------------------------------------------------------------
def reply_stage(kb: bool, quick: bool, work: Path) -> dict:
    """One reply run (child process): train, score on test, keep every output with its passages."""
    import shutil

    from generation import QUICK, native_bf16

    from mmsft.pipeline import train
    from mmsft.spec import build_run_config

    extra = [*THREAD, *(REPLY_KB if kb else []), *(QUICK if quick else []), *(["train.mixed_precision=bf16"] if native_bf16() else [])]
    run_dir = work / "runs" / f"reply-{'kb' if kb else 'none'}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train(build_run_config(REPLY_TASK, "lora", extra), run_dir)
    summary = json.loads((run_dir / "metrics.json").read_text())
    outputs = [json.loads(line) for line in (run_dir / "test_predictions.jsonl").read_text().splitlines()]
    return {"task": REPLY_TASK, "kb": kb, "test": summary["test"], "train_seconds": summary["train_seconds"], "overrides": extra,
            "steps": summary["steps"], "outputs": outputs}


def reply_rows(stages: Path, quick: bool, work: Path, fresh: bool) -> tuple[list[dict], dict]:
    from mmsft.metrics import compute

    got = {}
    for kb in (False, True):
        path = stages / f"reply-{'kb' if kb else 'none'}.json"
        if fresh or not path.is_file():
            cmd = [sys.executable, __file__, "--reply-child", "kb" if kb else "none", "--work", str(work), *(["--quick"] if quick else [])]
            subprocess.run(cmd, check=True)
        got[kb] = json.loads(path.read_text())
    passages = {o["source"]: o["knowledge"] for o in got[True]["outputs"]}  # the same test rows, the same retrieval
    rows = []
    for kb, stage in got.items():
        outs = [o for o in stage["outputs"] if o["source"] in passages]
        scores = compute(["groundedness", "hallucinated_placeholders", "knowledge_f1"], [o["prediction"] for o in outs],
                         [o["reference"] for o in outs], knowledge=[passages[o["source"]] for o in outs], sources=[o["source"] for o in outs])
        rows.append({"task": REPLY_TASK, "kb": kb, "rouge_l": round(stage["test"]["rouge_l"], 2), "bleu": round(stage["test"]["bleu"], 2),
                     "hallucinated_placeholder_rate": round(scores["hallucinated_placeholder_rate"], 4),
                     "supported_content_share": round(scores["supported_content_share"], 4),
                     "knowledge_f1": round(scores["knowledge_f1"], 4), "supported_placeholder_share": round(scores["supported_placeholder_share"], 4),
                     "train_seconds": stage["train_seconds"], "test_n": len(outs)})
    return rows, got


# -- report --------------------------------------------------------------------------------------------
def plot(rows: list[dict], replies: list[dict], path: Path) -> None:
    """Gain over the no-KB baseline per (task, module, fraction), accuracy and macro-F1 side by side
    (horizontal bars so the labels read; green = pays), plus the replies' placeholder rate when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["accuracy", "f1_macro"]
    cells = list(dict.fromkeys((r["task"], r["module"], r["fraction"]) for r in rows if r["metric"] in metrics))
    panels = len(metrics) + bool(replies)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 0.32 * len(cells) + 1.6), squeeze=False)
    labels = [f"{task.split('_')[0]} · {module.replace('_', ' ')} · {fraction:.0%}" for task, module, fraction in cells]
    for ax, metric in zip(axes[0], metrics):
        got = {(r["task"], r["module"], r["fraction"]): r for r in rows if r["metric"] == metric}
        picked = [got[c] for c in cells]
        ax.barh(range(len(cells)), [100 * (r["value_mean"] - r["baseline_mean"]) for r in picked],
                xerr=[200 * max(r["value_std"], r["baseline_std"]) for r in picked], capsize=2,
                color=["tab:green" if pays(r) else "tab:gray" for r in picked])
        ax.axvline(2, color="tab:red", lw=0.8, ls="--")
        ax.axvline(0, color="black", lw=0.6)
        ax.set_yticks(range(len(cells)), labels if ax is axes[0][0] else [""] * len(cells), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"test {metric} gain over no KB (points; bars: 2 std)", fontsize=8)
    if replies:
        ax = axes[0][-1]
        ax.bar(["no KB", "KB"], [r["hallucinated_placeholder_rate"] for r in replies], color=["tab:gray", "tab:blue"])
        ax.set_title("reply hallucinated-placeholder rate", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows, runs, costs, replies, command: str, wall: float, quick: bool, carried: dict | None = None) -> str:
    lines = header("Knowledge injection on real KBs" + (" (--quick smoke run: tiny slices, not figures)" if quick else ""), command)
    if carried:
        lines += [f"Carried over: {carried['cells']} classification cells{' and the cost table' if carried['costs'] else ''} from "
                  f"`{carried['from']}` (stage files seeded, not re-trained).", ""]
    lines += ["Adapter `frozen` throughout (MiniLM-L6 frozen; heads and modules train; the baseline is the same adapter without "
              "knowledge): it makes 3 tasks x 4 arms x 2 fractions x 3 seeds affordable on a CPU, since a frozen backbone's features "
              "are computed once per cell and shared by the seeds. `retrieved_segments` gets `model.max_length` + its budget, so "
              "the text keeps its tokens. KBs built from a task hold training rows only (10%: the rows of the 10%); validation and "
              "test rows are never reachable, and a training row never retrieves itself. Mean ± std over seeds; 'pays' = "
              "≥ 2 points and beyond 2 std.", "", "## Classification (test)", "",
              "| task | KB | module | train | metric | with module | without (baseline) | Δ | pays |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = r["value_mean"] - r["baseline_mean"]
        lines.append(f"| {r['task']} | {TASKS[r['task']][0]} | {r['module']} | {r['fraction']:.0%} | {r['metric']} | {r['value_mean']:.4f} ± "
                     f"{r['value_std']:.4f} | {r['baseline_mean']:.4f} ± {r['baseline_std']:.4f} | {100 * delta:+.2f} | {'yes' if pays(r) else 'no'} |")
    paying = [r for r in rows if pays(r)]
    lines += ["", "**Verdict**: " + ("; ".join(f"{r['module']} on {r['task']} at {r['fraction']:.0%} ({r['metric']} "
                                               f"{100 * (r['value_mean'] - r['baseline_mean']):+.2f})" for r in paying) + " pay."
                                     if paying else "no module gains ≥ 2 points beyond 2 std on any task here.")]
    idle = sorted({(r["task"], r["module"]) for r in rows} - {(r["task"], r["module"]) for r in paying})
    if idle:
        lines.append("Does not pay (no fraction, neither metric): " + ", ".join(f"{m} on {t}" for t, m in idle) + ".")
    lines += ["", "## Cost", "", "Index build s: the dense index's encoding time as recorded when it was built (BM25: its indexing "
              "here); ms / query over 200 test rows (alias linking: per text).", "",
              "| task | module | KB | entries | blocked (held-out) | method | index build s | ms / query |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c['task']} | {c['module']} | {c['kb']} | {c['entries']:,} | {c['blocked_held_out']} | {c['method']} | "
              f"{c['index_build_s'] if c['index_build_s'] is not None else '-'} | {c['ms_per_query']} |" for c in costs]
    lines += ["", "Per cell (first seed's row; `step ms` = forward + backward of the whole composed model on 16 training rows, what a "
              "step costs when the backbone is not cached, e.g. under LoRA; slow-down = step ms / the baseline's):", "",
              "| task | module | train | prepare s (retrieval) | encode s | step ms | slow-down | K-Adapter pre-training |", "|---|---|---|---|---|---|---|---|"]
    first = {(r["task"], r["module"], r["fraction"]): r for r in sorted(runs, key=lambda r: -r["seed"])}
    for (task, module, fraction), r in first.items():
        base = first.get((task, "none", fraction), r)
        pre = r.get("pretraining") or {}
        pre_text = f"{pre.get('objective', '')}: held-out {pre.get('metric', '')} {pre.get('heldout', '')}, {pre.get('seconds', '')} s" if pre else "-"
        lines.append(f"| {task} | {module} | {fraction:.0%} | {r['prepare_s']} | {r['encode_s']} | {r['step_ms']} | "
                     f"{r['step_ms'] / max(base['step_ms'], 1e-9):.2f}x | {pre_text} |")
    checks = [r["check_max_abs_diff"] for r in runs if r.get("check_max_abs_diff") is not None]
    if checks:
        lines.append(f"\nentity_memory trained on cached last-block states: max |logit difference| against the composed model {max(checks):.2e}.")
    if replies:
        lines += ["", f"## Replies: {REPLY_TASK} (SmolLM2-135M + LoRA, test subset; groundedness against the passages the KB run retrieved)", "",
                  "| KB | ROUGE-L | BLEU | hallucinated placeholders | supported content | supported placeholders | knowledge-F1 | train s |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {'yes' if r['kb'] else 'no'} | {r['rouge_l']} | {r['bleu']} | {r['hallucinated_placeholder_rate']} | "
                  f"{r['supported_content_share']} | {r['supported_placeholder_share']} | {r['knowledge_f1']} | {r['train_seconds']} |" for r in replies]
        lower = replies[-1]["hallucinated_placeholder_rate"] < replies[0]["hallucinated_placeholder_rate"]
        lines.append(f"\nThe KB {'lowers' if lower else 'does not lower'} the hallucinated-placeholder rate.")
    lines += ["", f"Wall time of this invocation: {wall / 60:.1f} min (saved stages reused)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--modules", nargs="+", default=MODULES, choices=MODULES)
    ap.add_argument("--fractions", default="1.0,0.1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-reply", action="store_true", help="skip the reply runs (SmolLM2 LoRA, the slow part)")
    ap.add_argument("--quick", action="store_true", help="60/30/30-row slices, 1 seed, 2 epochs, 20 pre-training steps, the generation benchmark's quick reply settings")
    ap.add_argument("--work", type=Path, help="stages and run folders (default runs/bench-knowledge[-quick])")
    ap.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: the work folder)")
    ap.add_argument("--fresh", action="store_true", help="recompute saved stages")
    ap.add_argument("--from-report", type=Path, metavar="JSON", help="seed missing classification / cost stages from a committed "
                    "knowledge.json (its cells are reused, named in the report)")
    ap.add_argument("--reply-child", choices=["kb", "none"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = args.work or Path("runs") / ("bench-knowledge-quick" if args.quick else "bench-knowledge")
    stages = work / "stages"
    if args.reply_child:
        write_json(stages / f"reply-{args.reply_child}.json", reply_stage(args.reply_child == "kb", args.quick, work))
        return
    start = time.perf_counter()
    if args.from_report:
        seed_stages(args.from_report, stages)
    seeds = list(range(1 if args.quick else args.seeds))
    runs = run_cells(args.tasks, args.modules, [float(f) for f in args.fractions.split(",")], seeds, args.quick, stages, args.fresh)
    rows, costs = summarise(runs), staged_costs(args.tasks, args.quick, stages, args.fresh)
    replies = [] if args.no_reply else reply_rows(stages, args.quick, work, args.fresh)[0]
    out = args.out or (work if args.quick else RESULTS)
    command = command_line("knowledge.py")
    (out / "knowledge.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "knowledge.md").write_text(markdown(rows, runs, costs, replies, command, time.perf_counter() - start, args.quick,
                                               carried_over(stages)))
    write_json(out / "knowledge.json", {"rows": [*rows, *({k: r[k] for k in REPLY_KEYS} for r in replies)], "replies": replies,
                                        "costs": costs, "runs": runs})
    plot(rows, replies, out / "knowledge.png")
    print(f"wrote {out / 'knowledge.md'}, knowledge.json, knowledge.png")


if __name__ == "__main__":
    main()
