"""Does torch.compile pay for training on this CPU?  MiniLM-L6 finance_sentiment, eager vs compiled, side by side.

    OMP_NUM_THREADS=1 python benchmarks/compile_probe.py [--adapters lora full] [--batches 16]

Each row runs in a fresh process: the Runner's model, optimizer, precision (``train.mixed_precision: auto``)
and real length-grouped batches of the task's train split; ``BATCHES`` optimizer steps (forward, backward,
update) timed once the model is warm.  The compiled row wraps the composed model in
``torch.compile(dynamic=True)`` (the batches' lengths vary: one graph for all) and reports the compile
time, counted as the first pass over the batches, beside the steady step time of a second pass.
Writes benchmarks/results/compile_probe.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, write_json  # noqa: E402


def run_row(adapter: str, mode: str, count: int) -> dict:
    import torch

    from throughput_row import bare_runner, batches, load_session, timed_pass

    session = load_session("finance_sentiment", adapter)
    with tempfile.TemporaryDirectory(prefix="mmsft-compile-") as tmp:
        runner = bare_runner(session, tmp)
        model = runner.model.train()
        step_model = torch.compile(model, dynamic=True) if mode == "compiled" else model
        data = list(batches(runner, count))

        first = timed_pass(runner, step_model, data)  # eager: warm-up; compiled: compile + first pass
        steady = timed_pass(runner, step_model, data)
    samples = sum(len(b["labels"]) for b in data)
    return {"adapter": adapter, "mode": mode, "precision": runner.accelerator.mixed_precision, "steps": len(data),
            "first_pass_seconds": round(first, 2), "step_ms": round(1000 * steady / len(data), 1),
            "samples_per_second": round(samples / steady, 2), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", nargs="+", default=["lora", "full"])
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--row", nargs=2, metavar=("ADAPTER", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row:
        print(json.dumps(run_row(*args.row, args.batches)))
        return
    command = command_line("compile_probe.py")
    rows = []
    for adapter in args.adapters:
        for mode in ("eager", "compiled"):
            cmd = [sys.executable, __file__, "--batches", str(args.batches), "--row", adapter, mode]
            started = measured()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), **started})
            print(rows[-1], flush=True)
    for row in rows:
        eager = next(r for r in rows if r["adapter"] == row["adapter"] and r["mode"] == "eager")
        row["speedup_vs_eager"] = round(eager["step_ms"] / row["step_ms"], 3)
    lines = header("torch.compile on this CPU: training steps, eager vs compiled", command.strip())
    lines += ["| adapter | mode | precision | step ms | samples/s | vs eager | first pass s (compiled: compile included) | threads | load before |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['adapter']} | {r['mode']} | {r['precision']} | {r['step_ms']} | {r['samples_per_second']} | "
              f"**{r['speedup_vs_eager']:.2f}x** | {r['first_pass_seconds']} | {r['threads']} | {r['load_before']} |" for r in rows]
    slow = [r for r in rows if r["mode"] == "compiled" and r["speedup_vs_eager"] < 1.0]
    lines += ["", "Reading: " + ("torch.compile does not pay here: " + ", ".join(
        f"{r['adapter']} {r['speedup_vs_eager']:.2f}x after {r['first_pass_seconds']:.0f} s of compile and first pass" for r in slow)
        + ", so the runner trains eager." if slow else "compiled steps are faster once compiled; weigh the compile time."), ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compile_probe.md").write_text("\n".join(lines))
    write_json(RESULTS / "compile_probe.json", {"command": command.strip(), "rows": rows})
    print(f"report: {RESULTS / 'compile_probe.md'}")


if __name__ == "__main__":
    main()
