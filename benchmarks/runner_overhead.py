"""The runner's own cost: mmsft's Runner and the bare reference loop train the same model in one
process, epoch about epoch, so cores, load and allocator are shared and only the loops differ.

    python benchmarks/runner_overhead.py                      # traffic_vehicles / detector_top3, 64 images, 4 pairs
    python benchmarks/runner_overhead.py --images 128 --pairs 6 --threads 2

``benchmarks/detection.py`` compares whole trainings (separate processes; mmsft's includes its CPU
allocator setting, the reference runs with glibc's defaults).  This isolates the training loop:
accelerate's wrappers, the resumable length-grouped sampler, ``to_device``, ``loss.item()``, logging and
the progress bar against a DataLoader loop.  Two reference epochs under glibc's default malloc come
first (the second gives the page faults per step the allocator setting removes), then a warm-up epoch
of the Runner (it sets mmsft's allocator, so both loops then run with it), then pairs alternate their
order (ABBA) so a drift in machine speed falls on both.  The Runner trains one epoch per pair without validation.
Writes ``runner_overhead.md`` and ``runner_overhead.json`` into ``--results``.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, write_json  # noqa: E402
from detection import ADAPTERS, TASK, reference_epoch, reference_parts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", default="top3", choices=list(ADAPTERS))
    ap.add_argument("--images", type=int, default=64, help="train images per epoch (data.max_train_samples)")
    ap.add_argument("--pairs", type=int, default=4, help="counted (reference, runner) epoch pairs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config
    from mmsft.training.runner import Runner

    overrides = [f"train.threads={args.threads}", f"data.max_train_samples={args.images}", "train.epochs=1"]
    cfg = build_run_config(TASK, ADAPTERS[args.adapter], overrides)
    session = build_session(cfg)
    model, prepared, t = session.model, session.prepared, cfg.train
    loader, optimizer, scheduler, params = reference_parts(model, prepared, t, args.pairs + 2)  # its epochs in all

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def reference() -> float:
        seen, seconds, _ = reference_epoch(model, loader, optimizer, scheduler, params, t.max_grad_norm)
        return seen / seconds

    def runner() -> float:
        with tempfile.TemporaryDirectory() as run_dir:
            r = Runner(t, model, prepared.splits["train"], prepared.collate, prepared.lengths["train"], lambda m: {}, Path(run_dir))
            return r.fit().samples_per_second

    stamp = measured()
    reference()  # warm-up under glibc's defaults
    before = faults()
    system_speed = reference()
    system_faults = (faults() - before) / len(loader)
    runner()  # warm-up; sets mmsft's CPU allocator for the rest of the process
    before = faults()
    pairs = []
    for i in range(args.pairs):
        if i % 2:
            b, a = runner(), reference()
        else:
            a, b = reference(), runner()
        pairs.append({"reference": round(a, 3), "runner": round(b, 3), "ratio": round(b / a, 4)})
        print(pairs[-1], flush=True)
    kept_faults = (faults() - before) / (args.pairs * 2 * len(loader))
    ratios = [p["ratio"] for p in pairs]
    result = {"task": TASK, "adapter": args.adapter, "images": len(prepared.splits["train"]), "threads": args.threads,
              "pairs": pairs, "ratio_mean": round(statistics.mean(ratios), 4),
              "ratio_std": round(statistics.stdev(ratios), 4) if len(ratios) > 1 else 0.0,
              "reference_system_malloc": {"images_per_second": round(system_speed, 3), "page_faults_per_step": round(system_faults)},
              "page_faults_per_step_kept": round(kept_faults), **stamp}
    command = command_line("runner_overhead.py")
    lines = header("Runner overhead: mmsft's Runner vs a bare training loop, same process", command)
    lines += [f"`{TASK}` / `{ADAPTERS[args.adapter]}`, {result['images']} train images per epoch, batch {t.batch_size}, "
              f"{args.threads} thread(s); warm-up epoch of each not counted; pairs alternate their order.", "",
              "| pair | reference images/s | Runner images/s | Runner / reference |", "|---|---|---|---|"]
    lines += [f"| {i + 1} | {p['reference']:.2f} | {p['runner']:.2f} | {p['ratio']:.3f} |" for i, p in enumerate(pairs)]
    lines += ["", f"Page faults per training step: {system_faults:,.0f} for the reference loop under glibc's default malloc "
              f"({system_speed:.2f} images/s, one epoch, not in the pairs); {kept_faults:,.0f} on average over the pairs, "
              "after the Runner set `train.cpu_allocator=keep`."]
    lines += ["", f"**Runner / reference: {result['ratio_mean']:.3f}x ± {result['ratio_std']:.3f}** (mean ± std over pairs; "
              "1.0 = the runner costs nothing over the bare loop).", "",
              "Both loops train the same model object with the same optimizer settings; the Runner builds a fresh optimizer,",
              "schedule and sampler each epoch (as a one-epoch `mmsft train` would) and is timed by its own",
              "`samples_per_second` (training steps only).", ""]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "runner_overhead.md").write_text("\n".join(lines))
    write_json(args.results / "runner_overhead.json", result)
    print(f"wrote {args.results / 'runner_overhead.md'} (ratio {result['ratio_mean']:.3f})")


if __name__ == "__main__":
    main()
