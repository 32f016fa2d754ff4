"""mmsft's runner vs the Hugging Face Trainer (+ peft LoRA) on the same model, data and settings.

    python benchmarks/vs_hf_trainer.py [--task finance_sentiment] [--adapters lora full] [--precisions fp32 bf16] [--epochs 3] [--repeats 2]

Both sides train the very same mmsft model (MiniLM-L6 + LoRA + mean-pooled linear head, built by
`mmsft.pipeline.build_session` with the same seed) on the same tokenized train split with the same
batch size, LR, schedule, warmup, weight decay, clipping and length grouping; both are then scored
with the same evaluation code on test.  Samples/s counts training only (no evaluation, no saving).
Each precision is the same on both sides: fp32, or bf16 autocast (mmsft ``train.mixed_precision=bf16``,
the Trainer's ``bf16=True``); bf16 rows by default only where the CPU has bf16 instructions.
Writes benchmarks/results/vs_hf_trainer.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, write_json  # noqa: E402


PRECISIONS = {"fp32": "no", "bf16": "bf16"}  # row label -> train.mixed_precision


def hf_trainer_run(cfg, tmp: Path) -> dict:
    from transformers import Trainer, TrainingArguments

    from mmsft.pipeline import build_session

    session = build_session(cfg)
    train_ds = session.prepared.splits["train"].with_format(None)
    t = cfg.train
    import math

    total_steps = math.ceil(t.epochs * math.ceil(len(train_ds) / t.batch_size))
    args = TrainingArguments(
        output_dir=str(tmp / "hf"), num_train_epochs=t.epochs, per_device_train_batch_size=t.batch_size,
        learning_rate=t.lr, weight_decay=t.weight_decay, warmup_steps=int(round(total_steps * t.warmup_ratio)), lr_scheduler_type=t.schedule,
        max_grad_norm=t.max_grad_norm, length_column_name="length",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        eval_strategy="no", save_strategy="no", logging_steps=50, report_to=[], seed=t.seed, use_cpu=True,
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, bf16=t.mixed_precision == "bf16",
    )
    train_ds = train_ds.add_column("length", session.prepared.lengths["train"])
    collate = session.prepared.collate

    def collate_fn(items):
        return collate([{k: v for k, v in it.items() if k != "length"} for it in items])

    trainer = Trainer(model=session.model, args=args, train_dataset=train_ds, data_collator=collate_fn)
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    test = session.kind.evaluate(cfg, session.model, session.prepared, "test", session.processor)
    return {"samples_per_second": len(train_ds) * t.epochs / seconds, "accuracy": test.metrics["accuracy"],
            "train_seconds": seconds, "trainer_reported_samples_per_second": out.metrics.get("train_samples_per_second")}


def mmsft_run(cfg, tmp: Path) -> dict:
    import json

    from mmsft.pipeline import train

    run = train(cfg, tmp / "mmsft")
    m = json.loads((run / "metrics.json").read_text())
    return {"samples_per_second": m["samples_per_second"], "accuracy": m["test"]["accuracy"], "train_seconds": m["train_seconds"]}


def sitting(task: str, adapter: str, precision: str, epochs: float, repeats: int, tmp: Path) -> dict:
    """Both sides ``repeats`` times, alternating which goes first, so drift over the sitting favours neither."""
    from mmsft.spec import build_run_config

    # no early stopping on either side: both train exactly the same number of epochs
    overrides = [f"train.epochs={epochs}", "train.early_stopping.patience=0", "train.early_stopping.restore_best=false",
                 f"train.mixed_precision={PRECISIONS[precision]}"]
    runs = {"hf_trainer": [], "mmsft": []}
    for repeat in range(repeats):
        order = ("hf_trainer", "mmsft") if repeat % 2 == 0 else ("mmsft", "hf_trainer")
        for side in order:
            cfg = build_run_config(task, adapter, overrides)
            where = tmp / f"{adapter}-{precision}-{side}-{repeat}"
            runs[side].append(hf_trainer_run(cfg, where) if side == "hf_trainer" else mmsft_run(cfg, where))
            print(f"[vs-hf] {adapter} {precision} repeat {repeat + 1} {side}: {runs[side][-1]['samples_per_second']:.1f} samples/s", flush=True)
    mean = {side: sum(r["samples_per_second"] for r in rs) / len(rs) for side, rs in runs.items()}
    return {"adapter": adapter, "precision": precision, "mmsft_samples_per_second": round(mean["mmsft"], 2),
            "hf_samples_per_second": round(mean["hf_trainer"], 2), "ratio": round(mean["mmsft"] / mean["hf_trainer"], 3),
            "mmsft_accuracy": runs["mmsft"][0]["accuracy"], "hf_accuracy": runs["hf_trainer"][0]["accuracy"], "repeats": repeats,
            "runs": runs, "settings": settings(task, adapter, epochs, overrides)}


def kept_rows(path: Path, new: list[dict]) -> list[dict]:
    """Rows of an earlier report for (adapter, precision) pairs this invocation does not re-run: each
    row's ratio comes from its own sitting (``sitting``), both sides side by side."""
    import json

    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    done = {(r["adapter"], r["precision"]) for r in new}
    runs = old.get("runs", {})
    kept = [r for r in old.get("rows", []) if (r["adapter"], r["precision"]) not in done]
    for r in kept:
        r.setdefault("sitting", "an earlier sitting")
        r["runs"] = runs.get(f"{r['adapter']}/{r['precision']}", {})
        r["settings"] = old.get("settings", {})
    return kept


def settings(task: str, adapter: str, epochs: float, overrides: list[str]) -> dict:
    from mmsft.spec import build_run_config

    cfg = build_run_config(task, adapter, overrides)
    return {"task": task, "adapter": adapter, "epochs": epochs, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
            "schedule": cfg.train.schedule, "backbone": cfg.model.backbone,
            "adapter_options": {k: v for k, v in vars(cfg.adapters[adapter].options).items()} if adapter in cfg.adapters else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="finance_sentiment")
    ap.add_argument("--adapters", nargs="+", default=["lora", "full"])
    ap.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=None,
                    help="default: fp32, and bf16 where the CPU has bf16 instructions (AVX512-BF16 / AMX)")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, alternating which side goes first")
    args = ap.parse_args()
    from mmsft.training.precision import cpu_bf16_speedup

    precisions = args.precisions or ["fp32", *(["bf16"] if cpu_bf16_speedup() > 1 else [])]
    with tempfile.TemporaryDirectory(prefix="mmsft-vs-hf-") as tmp:
        rows = [sitting(args.task, adapter, precision, args.epochs, args.repeats, Path(tmp))
                for precision in precisions for adapter in args.adapters]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in rows:
        r["sitting"] = stamp
    rows = [*kept_rows(RESULTS / "vs_hf_trainer.json", rows), *rows]
    first = rows[0]
    results = {"rows": [{k: v for k, v in r.items() if k not in ("runs", "settings")} for r in rows],
               "hf_trainer": first["runs"]["hf_trainer"][0], "mmsft": first["runs"]["mmsft"][0], "ratio": first["ratio"],
               "settings": first["settings"], "runs": {f"{r['adapter']}/{r['precision']}": r["runs"] for r in rows}}
    write_json(RESULTS / "vs_hf_trainer.json", results)
    command = command_line("vs_hf_trainer.py")
    st = first["settings"]
    lines = header("mmsft runner vs Hugging Face Trainer", command.strip()) + [
        f"Same model ({st['backbone']} + adapter + mean-pooled head), same tokenized data, same hyperparameters "
        f"({args.epochs:g} epochs, batch {st['batch_size']}, the task's schedule and warmup, length-grouped batches), same seed; "
        f"evaluation code shared. Each side ran {args.repeats} times per adapter in one sitting, alternating which side went first; "
        "samples/s are the means of the repeats, accuracy the first run's (both sides are deterministic).", "",
        "| adapter | precision | mmsft samples/s | Trainer samples/s | ratio | mmsft test accuracy | Trainer test accuracy | sitting |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['adapter']} | {r['precision']} | {r['mmsft_samples_per_second']:.1f} | {r['hf_samples_per_second']:.1f} | "
          f"**{r['ratio']:.2f}x** | {r['mmsft_accuracy']:.4f} | {r['hf_accuracy']:.4f} | {r['sitting']} |" for r in rows], "",
        "Rows of (adapter, precision) pairs an invocation does not re-run are kept from the previous report, with their sitting. "
        "Every run: " + "; ".join(f"{r['adapter']} {r['precision']} {side} " + ", ".join(f"{x['samples_per_second']:.1f}" for x in xs)
                                   for r in rows for side, xs in r["runs"].items()), ""]
    (RESULTS / "vs_hf_trainer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
