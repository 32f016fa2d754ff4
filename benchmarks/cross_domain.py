"""Cross-domain sentiment transfer on MiniLM-L6: the 12 review pairs x {source_only, target_mlm, dann}
with LoRA, source_only with frozen and full, and SST-2 (movies) -> the four review domains; 3 seeds.

    python benchmarks/cross_domain.py [--jobs 2] [--seeds 3] [--work DIR] [--fresh] [--suites ...] [--quick] [--from-report JSON] [--report-only]

One plan over all suites (a cell two suites share, e.g. a LoRA source_only model, is trained once and
scored on every target either needs), run through ``mmsft.crossdomain`` exactly as ``mmsft bench
cross-domain`` runs it: one torch thread per cell, ``--jobs 2`` runs two cells at once (one core each).
Everything is resumable cell by cell (and stage by stage: a cell's MLM stage, its fine-tune from the
last checkpoint, its scores): rerun the same command after an interruption.  The work folder (default
runs/bench-cross-domain) keeps cells, stages, texts and logs; the matrix is rewritten after every cell
to benchmarks/results/cross_domain.{md,json,png} (``--quick``: a smoke run on 48 training rows per
task, written into the work folder only, never over the results).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header  # noqa: E402

REVIEWS = ["reviews_books", "reviews_dvd", "reviews_electronics", "reviews_kitchen"]
METHODS = ["source_only", "target_mlm", "dann"]
ADAPTERS = ["lora", "frozen", "full"]
SUITES = {
    "reviews_lora": {"tasks": REVIEWS, "adapters": ["lora"], "methods": METHODS},
    "reviews_frozen_full": {"tasks": REVIEWS, "adapters": ["frozen", "full"], "methods": ["source_only"]},
    "sst2_to_reviews": {"sources": ["sst2_sentiment"], "targets": REVIEWS, "adapters": ["lora"], "methods": ["source_only"]},
}
TARGET_GAIN = 0.015  # the target: the best adaptation method's 12-pair mean beats source_only by >= 1.5 points
ANCHORS = ("Published anchors (BERT-base, mean of the 12 review pairs, accuracy %): source-only BERT ≈ 88 (BERT-DAAT's baseline), "
           "DANN (non-BERT) 78.4, BERT-DAAT 90.1, BERT-GAST 91.0, UDALM 91.7. MiniLM-L6 has a quarter of BERT-base's parameters.")


def target_lines(data: dict) -> list[str]:
    """The issue's target, checked on the 12-pair LoRA summary."""
    rows = [s for s in data["summary"] if s["group"] == "pairs among the targets" and s["adapter"] == "lora" and s.get("gain_over_source_only") is not None]
    lines = ["## Target", "", ANCHORS, ""]
    if not rows:
        return lines + ["Not measured yet: the 12-pair LoRA rows of source_only and an adaptation method are incomplete.", ""]
    best = max(rows, key=lambda s: s["gain_over_source_only"])
    met = best["gain_over_source_only"] >= TARGET_GAIN and best["verdict"] == "pays"
    lines.append(f"Best adaptation method on the 12 pairs: `{best['method']}`, {100 * best['gain_over_source_only']:+.2f} points over source_only "
                 f"(± {100 * best['gain_std_over_seeds']:.2f} over seeds; {best['verdict']}): target ≥ +1.5 beyond seed noise "
                 + ("met ✅" if met else "not met ❌") + ".")
    for s in rows:
        if s["verdict"] != "pays":
            lines.append(f"- `{s['method']}` does not pay here: {100 * s['gain_over_source_only']:+.2f} points ({s['verdict']}).")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="cells at once, one core each (2 on this 2-core machine)")
    ap.add_argument("--work", type=Path, default=None, help="cells / stages / texts / logs (default runs/bench-cross-domain[-quick])")
    ap.add_argument("--fresh", action="store_true", help="recompute every planned cell")
    ap.add_argument("--quick", action="store_true", help="smoke mode (48 train rows, 6 steps); results stay in the work folder")
    ap.add_argument("--from-report", type=Path, metavar="JSON", help="seed the work folder's missing cells from a committed matrix JSON")
    ap.add_argument("--report-only", action="store_true", help="train nothing: write the matrix from the cells already finished")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="method options (dann.weight=0.5) or task overrides for every cell")
    args = ap.parse_args()

    from mmsft.crossdomain.bench import execute, seed_cells
    from mmsft.crossdomain.config import parse_bench, split_overrides
    from mmsft.crossdomain.plan import make_plan, merge_plans
    from mmsft.crossdomain.report import write_matrix

    project = RESULTS.parent.parent
    work = args.work or project / "runs" / ("bench-cross-domain-quick" if args.quick else "bench-cross-domain")
    methods, tasks = split_overrides(args.overrides)
    plans = [make_plan(parse_bench({**SUITES[name], "seeds": args.seeds, "jobs": args.jobs, "threads": 1, "quick": args.quick,
                                    "overrides": tasks}, methods)) for name in args.suites]
    plan = merge_plans(plans)
    carried = seed_cells(args.from_report, work) if args.from_report else 0
    stem = work / "cross_domain" if args.quick else RESULTS / "cross_domain"
    command = command_line("cross_domain.py")
    lines = header("Cross-domain sentiment transfer on MiniLM-L6", command.strip())
    lines += [f"- Suites: {', '.join(args.suites)}; {len(plan.cells)} cells ({args.seeds} seeds), one torch thread per cell, "
              f"{args.jobs} cell(s) at once" + ("; **quick smoke mode: numbers mean nothing**" if args.quick else ""),
              *([f"- Carried over: {carried} finished cells seeded from `{args.from_report}` (their `measured_at` says when each ran)"] if carried else []),
              *(["- Report only (`--report-only`): written from the cells finished in the work folder, nothing trained by this "
                 "command; each row's seeds say what it holds, a missing row was not run yet"] if args.report_only else []),
              ""]

    def update(records: list[dict]) -> dict:
        return write_matrix(records, stem, plan.targets, METHODS, ADAPTERS, lines, {"command": command.strip()}, footer=target_lines)

    if args.report_only and args.fresh:
        ap.error("--report-only writes what is finished; --fresh would recompute it")
    update(execute(plan, work, args.fresh, update, run=not args.report_only))
    print(f"matrix: {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
