"""GPU check: mmsft on the lent GPU machine, one part per call, from a bundle made on the CPU machine.

    bash scripts/gpu_bundle.sh text              # here: wheels, MiniLM fp16, finance data -> gpu_bundle/text
    bash scripts/gpu_check.sh text               # there: installs offline, probes, trains -> benchmarks/results/gpu.{md,json}
    bash scripts/gpu_check.sh vision --copy-to DIR
    bash scripts/gpu_check.sh text --dry-run     # every step it would take, nothing run
    bash scripts/gpu_check.sh text --cpu-smoke   # the same steps on CPU, fp32, tiny: report in a temp folder

Why one script of steps (``gpu_plan.py``): device time is short (15 minutes for both parts, start-up
included), so a part installs, probes and trains in one call and writes its report even when a step
fails or runs out of its 450 s budget; the dry run prints the very steps a run executes.  Without a
CUDA device and without --cpu-smoke / --dry-run it exits 2 with one line.  Exit 1 when a step failed.
A CPU smoke report never goes into benchmarks/results (default: a new temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_json  # noqa: E402
from gpu_plan import BUDGET, ROOT, Context, plan  # noqa: E402
from gpu_report import check_row, render  # noqa: E402


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def new_folder(prefix: str, dry_run: bool) -> Path:
    """A new temporary folder (a dry run only names one: it creates nothing)."""
    return Path(tempfile.gettempdir()) / f"{prefix}NEW" if dry_run else Path(tempfile.mkdtemp(prefix=prefix))


def bundle_mib(bundle: Path) -> float:
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20 if bundle.is_dir() else 0.0


def dry_run(ctx: Context, steps, out: Path) -> int:
    env = ctx.env()
    state = f"present, {bundle_mib(ctx.bundle):.1f} MiB" if (ctx.bundle / "bundle.json").is_file() else \
        f"MISSING: make it with `bash scripts/gpu_bundle.sh {ctx.part}`"
    print(f"gpu_check {ctx.part} ({ctx.mode}), dry run: nothing is run")
    print(f"bundle: {ctx.bundle} ({state})")
    print(f"work folder: {ctx.work}; budget {BUDGET[ctx.mode]} s")
    print("environment of every step: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
    if not ctx.smoke:
        print(" 0. check the CUDA device: torch.cuda.is_available() (exit 2 without one)")
    for i, step in enumerate(steps, 1):
        print(f"{i:2d}. {step.title}{' [stops the part on failure]' if step.fatal else ''}: {step.describe({})}")
        if step.run_dir:
            print(f"    -> {step.run_dir}/metrics.json (timeout {step.timeout} s)")
    print(f"{len(steps) + 1:2d}. write the report: {out / 'gpu.md'} and {out / 'gpu.json'} (part '{ctx.part}'; the other part kept)")
    return 0


def execute(ctx: Context, steps) -> tuple[list[dict], list[dict], float]:
    """Run the steps in order within the part's budget: (step rows, check rows, wall seconds)."""
    env = {**os.environ, **ctx.env()}
    start, done, checks, stop = time.perf_counter(), [], [], None
    for step in steps:
        left = BUDGET[ctx.mode] - (time.perf_counter() - start)
        tick, status = time.perf_counter(), "ok"
        if step.skipped:
            status = f"skipped: {step.skipped}"
        elif stop:
            status = f"not run: {stop}"
        elif left < 10:
            status = stop = "not run: the part's budget is spent"
        else:
            print(f"\n== {step.title}", flush=True)
            try:
                if step.call:
                    step.call()
                else:
                    print("$", shlex.join(step.argv), flush=True)
                    subprocess.run(step.argv, env=env, cwd=ROOT, check=True, timeout=min(step.timeout, left))
            except subprocess.TimeoutExpired:
                status = f"timed out after {min(step.timeout, left):.0f} s"
            except Exception as exc:  # noqa: BLE001 - a failed step is reported, the report is still written
                status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            if status != "ok" and step.fatal:
                stop = f"'{step.title}' {status.split(':')[0]}"
        seconds = time.perf_counter() - tick
        done.append({"title": step.title, "status": status, "seconds": round(seconds, 1)})
        if step.check:
            checks.append(check_row(step.check, status, seconds, step.run_dir))
    return done, checks, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["text", "vision"])
    ap.add_argument("--bundle", type=Path, help="the part's bundle (default gpu_bundle/PART)")
    ap.add_argument("--dry-run", action="store_true", help="print every step (installs, commands, outputs) and exit 0")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same steps on CPU in fp32 on tiny subsets (report: --out or a temp folder)")
    ap.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --cpu-smoke: a new temporary folder)")
    ap.add_argument("--copy-to", type=Path, help="also copy gpu.md / gpu.json there (e.g. the folder that comes back from the machine)")
    ap.add_argument("--work", type=Path, help="installs, caches and run folders (default: a new temporary folder)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE", help="extra override for every training")
    args = ap.parse_args(argv)
    if not args.cpu_smoke and not args.dry_run and not cuda_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): run it on the GPU machine, "
              "or use --cpu-smoke / --dry-run", file=sys.stderr)
        return 2
    bundle = (args.bundle or ROOT / "gpu_bundle" / args.part).resolve()
    work = (args.work or new_folder(f"mmsft-gpu-{args.part}-", args.dry_run)).resolve()
    out = (args.out or (new_folder("mmsft-gpu-smoke-", args.dry_run) if args.cpu_smoke else RESULTS)).resolve()
    if args.cpu_smoke and out == RESULTS.resolve():
        print("gpu_check: a CPU smoke report never goes into benchmarks/results: give --out another folder", file=sys.stderr)
        return 2
    ctx = Context(args.part, bundle, work, args.cpu_smoke, args.extra)
    steps = plan(ctx)
    if args.dry_run:
        return dry_run(ctx, steps, out)
    if not (bundle / "bundle.json").is_file():
        print(f"gpu_check: no bundle at {bundle}: make it with `bash scripts/gpu_bundle.sh {args.part}` and carry it", file=sys.stderr)
        return 2
    done, checks, wall = execute(ctx, steps)
    probe_file = work / "probe.json"
    probe = json.loads(probe_file.read_text()) if probe_file.is_file() else {}
    part = {"part": args.part, "mode": ctx.mode, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": shlex.join(["bash", "scripts/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])]),
            "budget_seconds": BUDGET[ctx.mode], "wall_seconds": round(wall, 1), "device": probe.get("device", {}),
            "probe": probe, "bundle": {"path": str(bundle.relative_to(ROOT)) if bundle.is_relative_to(ROOT) else str(bundle),
                                       "mib": round(bundle_mib(bundle), 1)}, "steps": done, "checks": checks}
    earlier = out / "gpu.json"
    parts = json.loads(earlier.read_text()) if earlier.is_file() else {}
    parts[args.part] = part
    write_json(out / "gpu.json", parts)
    (out / "gpu.md").write_text(render(parts, part["command"]) + "\n")
    for folder in [args.copy_to] if args.copy_to else []:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("gpu.md", "gpu.json"):
            shutil.copyfile(out / name, folder / name)
    failed = [s for s in done if not (s["status"] == "ok" or s["status"].startswith("skipped"))]
    print(f"\ngpu_check {args.part}: {len(done) - len(failed)} of {len(done)} steps ok in {wall:.0f} s; report {out / 'gpu.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
