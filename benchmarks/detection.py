"""Detection benchmark: the default detector of traffic_vehicles x adapters (top3 = the task's default,
full, frozen, LoRA) through mmsft, and the same model trained by a plain torchvision-reference-style
loop, in one run.

    python benchmarks/detection.py                 # the full benchmark (estimated 1.5-2 h on 2 idle CPU cores)
    python benchmarks/detection.py --quick         # smoke test: 16 train / 8 eval images, 1 epoch
    python benchmarks/detection.py --threads 1 --side-by-side train.epochs=6 --adapters top3   # re-time the default
                                                   # against the reference, both at once on one core each

mmsft rows: ``mmsft train traffic_vehicles --adapter detector_<a>`` in a fresh process each (clean peak
memory).  Reference row: a fresh process builds the very same model (``mmsft.pipeline.build_session``:
same backbone, neck, head, adapter, seed, datasets and augmentation) and trains it the way
torchvision's ``references/detection/train.py`` does -- a bare DataLoader loop, ``sum(loss_dict)``,
``backward``, clip, ``optimizer.step``, per-step LR schedule -- with the same optimizer groups, LR,
schedule, warmup, weight decay, clipping, batch size and epochs; no validation, checkpoints or logging.
Both score the final / best model on test with the same code.  Images/s counts training time only.
Writes ``detection.md``, ``detection.json`` and ``detection.png`` into ``--results``
(default benchmarks/results; with --quick a temporary folder unless ``--results`` is given).  mmsft rows
of an earlier sitting with the same overrides are kept unless ``--adapters`` re-measures them, so
``--adapters top3`` re-times the default against the reference alone; every row records when it ran
and the load average before it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, train_in_subprocess, write_json  # noqa: E402

TASK = "traffic_vehicles"
# "top3" is the task's default (first 2 backbone stages frozen); the issue asks for full / frozen / LoRA
ADAPTERS = {"top3": "detector_top3", "full": "detector_full", "frozen": "detector_frozen", "lora": "detector_lora"}
QUICK = ["data.max_train_samples=16", "data.max_eval_samples=8", "train.epochs=1"]


# ----------------------------------------------------------------------------- the reference loop
def reference_epoch(model, loader, optimizer, scheduler, params, max_grad_norm) -> tuple[int, float, float]:
    """One epoch as torchvision's references/detection/train.py trains: (images, seconds, last loss)."""
    import torch

    seen, tick = 0, time.perf_counter()
    model.train()
    for batch in loader:
        losses = model(pixel_values=batch["pixel_values"], targets=batch["targets"])["loss"]
        optimizer.zero_grad()
        losses.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        scheduler.step()
        seen += len(batch["pixel_values"])
    return seen, time.perf_counter() - tick, losses.item()


def reference_parts(model, prepared, t, epochs: float):
    """DataLoader, optimizer, scheduler and trainable parameters set up as mmsft's runner sets them up."""
    import torch
    from torch.utils.data import DataLoader

    from mmsft.training.optim import build_optimizer
    from mmsft.training.schedules import build_scheduler

    loader = DataLoader(prepared.splits["train"], batch_size=t.batch_size, shuffle=True, collate_fn=prepared.collate,
                        generator=torch.Generator().manual_seed(t.seed))
    optimizer = build_optimizer(model, t.lr, t.weight_decay, t.head_lr)
    scheduler = build_scheduler(optimizer, t.schedule, max(1, int(epochs * len(loader))), t.warmup_ratio)
    return loader, optimizer, scheduler, [p for p in model.parameters() if p.requires_grad]


def reference_worker(adapter: str, overrides: list[str], out: Path) -> None:
    """torchvision-reference-style training of the mmsft-built model; writes ``out`` (JSON)."""
    import resource

    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    cfg = build_run_config(TASK, ADAPTERS[adapter], overrides)
    session = build_session(cfg)  # same seeds, model, adapter and datasets as `mmsft train`
    model, prepared, t = session.model, session.prepared, cfg.train
    loader, optimizer, scheduler, params = reference_parts(model, prepared, t, t.epochs)
    seen, seconds = 0, 0.0
    for epoch in range(int(t.epochs)):
        n, dt, loss = reference_epoch(model, loader, optimizer, scheduler, params, t.max_grad_norm)
        seen, seconds = seen + n, seconds + dt
        print(f"reference epoch {epoch + 1}: loss {loss:.4f}", flush=True)
    test = session.kind.evaluate(cfg, model, prepared, "test")
    counts = model.param_counts()
    out.write_text(json.dumps({"map50": test.metrics["map50"], "map50_95": test.metrics["map50_95"],
                               "trainable_params": counts["trainable_params"], "images_per_second": seen / seconds,
                               "train_seconds": seconds, "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def start_reference(adapter: str, overrides: list[str], out: Path) -> subprocess.Popen:
    """The reference loop in a fresh process (it writes ``out``); the caller waits."""
    cmd = [sys.executable, __file__, "--reference-worker", adapter, "--worker-out", str(out), "--", *overrides]
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd)


# ----------------------------------------------------------------------------- results
def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['runner']}\n{r['adapter']}" for r in rows]
    colours = ["tab:blue" if r["runner"] == "mmsft" else "tab:gray" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, title in ((axes[0], "map50", "test mAP@0.5"), (axes[1], "map50_95", "test mAP@0.5:0.95"),
                           (axes[2], "images_per_second", "train images/s")):
        bars = ax.bar(range(len(rows)), [r[key] for r in rows], color=colours)
        for b, r in zip(bars, rows):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{r[key]:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title)
    fig.suptitle(f"{TASK}: default detector, mmsft adapters vs a plain reference loop")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(rows: list[dict], command: str, cfg_text: str, quick: bool, default_epochs: float | None = None) -> str:
    lines = header("Detection benchmark: default detector x full / frozen / LoRA, and a reference loop", command)
    if quick:
        lines += ["**QUICK SMOKE RUN** (16 train / 8 eval images, 1 epoch): the figures only show the pipeline works.", ""]
    lines += [f"Task `{TASK}`; default model: {cfg_text}.", ""]
    if default_epochs is not None:
        lines += [f"Shorter than the task's default of {default_epochs:g} epochs (to fit five trainings in one sitting): the rows",
                  "compare runners and adapters at equal budget; `mmsft train traffic_vehicles` itself trains longer (docs/vision.md).", ""]
    lines += [
              "| runner | adapter | test mAP@0.5 | test mAP@0.5:0.95 | trainable params | train images/s | train s | peak MB | measured | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['runner']} | {r['adapter']} | {r['map50']:.4f} | {r['map50_95']:.4f} | {r['trainable_params']:,} | "
                     f"{r['images_per_second']:.2f} | {r['train_seconds']:.0f} | {r['peak_memory_mb']:.0f} | "
                     f"{r.get('measured_at', '—')} | {r.get('load_before', '—')} |")
    ref = next((r for r in rows if r["runner"] == "reference"), None)
    same = next((r for r in rows if ref and r["runner"] == "mmsft" and r["adapter"] == ref["adapter"]), None)
    if ref and same:
        together = " (trained side by side, one core each)" if ref.get("side_by_side") and same.get("side_by_side") else ""
        lines += ["", f"mmsft / reference ({ref['adapter']}){together}: {same['images_per_second'] / ref['images_per_second']:.2f}x the images/s; "
                  f"mAP@0.5 {same['map50']:.4f} vs {ref['map50']:.4f}, mAP@0.5:0.95 {same['map50_95']:.4f} vs {ref['map50_95']:.4f}."]
    lines += ["", "Both runners keep the last epoch (`train.early_stopping.restore_best=false`, as torchvision's reference does);",
              "mmsft still validates every epoch (not counted in its images/s).",
              f"mmsft rows trained with `train.cpu_allocator=keep` (freed memory reused instead of re-faulted; README, runner "
              f"section): {', '.join(r['adapter'] for r in rows if r.get('cpu_allocator_tuned')) or 'none'}; the reference loop",
              "runs with glibc's defaults, as torchvision's script would. The loops alone, in one process: `runner_overhead.md`.",
              "Images/s counts training steps only (no evaluation or checkpoint time) on the same data pipeline",
              "(DataLoader in the main process, letterbox + augmentation). Peak memory is the process's peak RSS.",
              "`measured` / `load`: when each row started and the 1-minute load average just before (about 0 on an idle",
              "machine; one more per busy core), since a speed ratio is only fair between rows measured alike.", "",
              "![detection benchmark](detection.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", nargs="+", default=list(ADAPTERS), choices=list(ADAPTERS))
    ap.add_argument("--reference-adapter", default="top3", choices=list(ADAPTERS), help="adapter the reference loop trains (default: the task's)")
    ap.add_argument("--quick", action="store_true", help="smoke test on a few images (checks the script end to end)")
    ap.add_argument("--results", type=Path, help="output folder (default benchmarks/results; --quick: a temp folder)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every run")
    ap.add_argument("--side-by-side", action="store_true",
                    help="train the reference loop at the same time as mmsft's run of the same adapter (use --threads 1 on "
                         "2+ cores): both then see the same machine, which makes the speed ratio fair on a shared machine")
    ap.add_argument("--reference-worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()
    if args.reference_worker:  # train.threads in the overrides sets the torch threads
        return reference_worker(args.reference_worker, args.overrides, args.worker_out)

    # both runners keep the last epoch (torchvision's reference does), so their test mAP compares training alone
    overrides = [f"train.threads={args.threads}", "train.early_stopping.restore_best=false", *(QUICK if args.quick else []),
                 *args.overrides]
    results = args.results or (Path(tempfile.mkdtemp(prefix="mmsft-det-quick-")) if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    # rows of an earlier sitting with the same overrides are kept unless this one re-measures them
    earlier = json.loads((results / "detection.json").read_text()) if (results / "detection.json").is_file() else []
    rows = [r for r in earlier if r.get("overrides") == overrides and r["runner"] == "mmsft" and r["adapter"] not in args.adapters]

    with tempfile.TemporaryDirectory(prefix="mmsft-bench-det-") as tmp:
        ref_out, ref = Path(tmp) / "reference.json", None
        for adapter in args.adapters:
            stamp = measured()
            if args.side_by_side and adapter == args.reference_adapter:  # both runners at once, one core each
                ref = (stamp, start_reference(adapter, overrides, ref_out))
            m = train_in_subprocess(TASK, ADAPTERS[adapter], Path(tmp) / adapter, overrides)
            rows.append({"runner": "mmsft", "adapter": adapter, "map50": m["test"]["map50"], "map50_95": m["test"]["map50_95"],
                         "trainable_params": m["trainable_params"], "images_per_second": m["samples_per_second"],
                         "train_seconds": m["train_seconds"], "peak_memory_mb": m["peak_memory_mb"],
                         "cpu_allocator_tuned": m["cpu_allocator_tuned"], **stamp, "overrides": overrides,
                         "side_by_side": ref is not None and adapter == args.reference_adapter})
        stamp, proc = ref or (measured(), start_reference(args.reference_adapter, overrides, ref_out))
        if proc.wait():
            raise SystemExit(f"the reference loop failed (exit {proc.returncode})")
        rows.append({"runner": "reference", "adapter": args.reference_adapter, **json.loads(ref_out.read_text()), **stamp,
                     "overrides": overrides, "side_by_side": ref is not None})
    rows.sort(key=lambda r: (r["runner"] != "mmsft", list(ADAPTERS).index(r["adapter"])))
    from mmsft.spec import build_run_config

    cfg = build_run_config(TASK, ADAPTERS[args.reference_adapter], overrides)
    head = cfg.model.heads["detection"]
    cfg_text = (f"`{cfg.model.backbone}` + {head.options.neck} ({head.options.channels} ch, strides "
                f"{head.options.strides} + {head.options.extra_levels} extra) + `{head.type}`, "
                f"{cfg.data.image_size}px {cfg.data.resize}, {cfg.train.epochs:g} epochs, batch {cfg.train.batch_size}, "
                f"{args.threads} threads")
    command = command_line("detection.py")
    write_json(results / "detection.json", rows)
    plot(rows, results / "detection.png")
    default_epochs = build_run_config(TASK, ADAPTERS[args.reference_adapter], []).train.epochs
    (results / "detection.md").write_text(render(rows, command, cfg_text, args.quick,
                                                 None if args.quick or default_epochs == cfg.train.epochs else default_epochs))
    print(f"wrote {results / 'detection.md'}")


if __name__ == "__main__":
    main()
