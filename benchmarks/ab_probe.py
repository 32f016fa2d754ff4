"""Two settings of one training run side by side: which is faster, as a ratio measured in one sitting.

    OMP_NUM_THREADS=1 python benchmarks/ab_probe.py NAME TASK --adapters lora full --a KEY=VALUE ... --b KEY=VALUE ...
        [--repeats 3] [--batches 24]

e.g. ``ab_probe.py dropout_masks finance_sentiment --a train.cpu_dropout=fast --b train.cpu_dropout=torch``.
An item whose name is upper case (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=16``) sets the run's environment instead of its config;
``source=REV`` runs that side from a git revision of this repository (a temporary worktree, its own mmsft), so two
commits compare side by side: ``--a source=HEAD --b source=HEAD~1``.
Every run is a fresh process (its own memory, no warm caches from the other setting): the Runner's model,
optimizer and precision on the task's first real length-grouped training batches; one untimed pass warms the
kernels, a second is timed (forward, backward, update).  Settings alternate A B, B A, ... over the repeats so a
drift in the machine's load favours neither; the report gives each run, the medians and their ratio.
The single-row timings of ``throughput.py`` (30 steps, one after another) move by 10% with the other core's
load; this is the probe for a claim that one setting is faster.  Writes benchmarks/results/ab_NAME.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, write_json  # noqa: E402


def run_once(task: str, adapter: str, overrides: list[str], count: int) -> dict:
    """One timed pass over ``count`` training batches in this process (the child's side)."""
    import torch

    import mmsft
    from throughput_row import bare_runner, batches, load_session, timed_pass

    session = load_session(task, adapter, overrides)
    with tempfile.TemporaryDirectory(prefix="mmsft-ab-") as tmp:
        runner = bare_runner(session, tmp)
        model = runner.model.train()
        data = list(batches(runner, count))

        timed_pass(runner, model, data)  # warm-up: kernels made, allocator settled
        seconds = timed_pass(runner, model, data)
    samples = sum(len(next(v for v in b.values() if torch.is_tensor(v))) for b in data)
    return {"samples_per_second": round(samples / seconds, 2), "seconds": round(seconds, 3), "batches": len(data),
            "precision": runner.accelerator.mixed_precision, "threads": torch.get_num_threads(),
            "mmsft_from": str(Path(mmsft.__file__).resolve().parents[1])}


def is_env(item: str) -> bool:
    name = item.split("=", 1)[0]
    return "=" in item and name.isupper() and "." not in name


def source_of(items: list[str]) -> str | None:
    """The git revision a ``source=REV`` item names, if any."""
    return next((item.split("=", 1)[1] for item in items if item.startswith("source=")), None)


def checkout(rev: str, into: Path) -> tuple[Path, str]:
    """A detached worktree of ``rev`` under ``into``; returns its path and the commit it resolved to."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True,
                            text=True, check=True).stdout.strip()
    tree = into / commit[:12]
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), commit], capture_output=True, check=True)
    return tree, commit


def child(task: str, adapter: str, overrides: list[str], count: int, tree: Path | None = None) -> dict:
    """One fresh process; from ``tree`` (a worktree, its mmsft first on the path) where the side names a source."""
    env = {**os.environ, **dict(item.split("=", 1) for item in overrides if is_env(item))}
    script = Path(__file__) if tree is None else tree / "benchmarks" / "ab_probe.py"
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    rest = [o for o in overrides if not is_env(o) and not o.startswith("source=")]
    cmd = [sys.executable, str(script), "--child", task, adapter, str(count), *rest]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode:
        raise SystemExit(f"{task}/{adapter} {' '.join(overrides)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sitting(task: str, adapter: str, a: list[str], b: list[str], repeats: int, count: int, trees: dict | None = None) -> dict:
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    trees = trees or {}
    for i in range(repeats):
        for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
            result = child(task, adapter, a if side == "a" else b, count, trees.get(side))
            runs[side].append(result)
            print(f"[ab] {adapter} {side}: {result['samples_per_second']:.1f} samples/s", flush=True)
    medians = {side: statistics.median(r["samples_per_second"] for r in rs) for side, rs in runs.items()}
    return {"adapter": adapter, "precision": runs["a"][0]["precision"], "a_samples_per_second": medians["a"],
            "b_samples_per_second": medians["b"], "ratio_a_over_b": round(medians["a"] / medians["b"], 3), "runs": runs}


def render(name: str, task: str, args, rows: list[dict], stamp: dict, command: str) -> str:
    lines = header(f"A/B probe `{name}`: {' '.join(args.a)} (A) vs {' '.join(args.b)} (B)", command)
    lines += [f"- Sitting: {stamp['measured_at']}, 1-minute load average {stamp['load_before']} at the start", "",
              *([f"- Sources: " + ", ".join(f"{side.upper()} = commit `{c[:12]}`" for side, c in stamp["commits"].items()), ""]
                if stamp.get("commits") else []),
              f"{task}: the first {args.batches} length-grouped training batches, one warm-up pass and one timed pass per "
              f"fresh process, {args.repeats} processes per side alternating A B / B A; samples/s are medians.", "",
              "| adapter | precision | A samples/s | B samples/s | A / B | runs A | runs B |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        runs = {s: ", ".join(f"{x['samples_per_second']:.1f}" for x in r["runs"][s]) for s in ("a", "b")}
        lines.append(f"| {r['adapter']} | {r['precision']} | {r['a_samples_per_second']:.1f} | {r['b_samples_per_second']:.1f} | "
                     f"**{r['ratio_a_over_b']:.2f}x** | {runs['a']} | {runs['b']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        task, adapter, count, *overrides = sys.argv[2:]
        print(json.dumps(run_once(task, adapter, overrides, int(count))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="names the report: benchmarks/results/ab_NAME.{md,json}")
    ap.add_argument("task")
    ap.add_argument("--adapters", nargs="+", default=["lora", "full"])
    ap.add_argument("--a", nargs="+", required=True, metavar="KEY=VALUE")
    ap.add_argument("--b", nargs="+", required=True, metavar="KEY=VALUE")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--out", type=Path, default=RESULTS, help="report folder (default benchmarks/results)")
    args = ap.parse_args()
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))
    stamp = measured()
    with tempfile.TemporaryDirectory(prefix="mmsft-ab-trees-") as tmp:
        trees, commits = {}, {}
        for side, items in (("a", args.a), ("b", args.b)):
            if (rev := source_of(items)) is not None:
                trees[side], commits[side] = checkout(rev, Path(tmp))
        try:
            rows = [sitting(args.task, adapter, args.a, args.b, args.repeats, args.batches, trees) for adapter in args.adapters]
        finally:
            for tree in set(trees.values()):
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    if commits:
        stamp["commits"] = commits
    write_json(args.out / f"ab_{args.name}.json", {"name": args.name, "task": args.task, "a": args.a, "b": args.b,
                                                  "repeats": args.repeats, "batches": args.batches, **stamp, "rows": rows})
    text = render(args.name, args.task, args, rows, stamp, f"OMP_NUM_THREADS={threads} " + command_line("ab_probe.py"))
    (args.out / f"ab_{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
