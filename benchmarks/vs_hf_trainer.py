"""mmsft's runner vs the Hugging Face Trainer (+ peft LoRA) on the same model, data and settings.

    python benchmarks/vs_hf_trainer.py [--task finance_sentiment] [--adapter lora] [--epochs 3]

Both sides train the very same mmsft model (MiniLM-L6 + LoRA + mean-pooled linear head, built by
`mmsft.pipeline.build_session` with the same seed) on the same tokenized train split with the same
batch size, LR, schedule, warmup, weight decay, clipping and length grouping; both are then scored
with the same evaluation code on test.  Samples/s counts training only (no evaluation, no saving).
Writes benchmarks/results/vs_hf_trainer.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, header, write_json  # noqa: E402


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
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="finance_sentiment")
    ap.add_argument("--adapter", default="lora")
    ap.add_argument("--epochs", type=float, default=3)
    args = ap.parse_args()
    from mmsft.spec import build_run_config

    # no early stopping on either side: both train exactly the same number of epochs
    overrides = [f"train.epochs={args.epochs}", "train.early_stopping.patience=0", "train.early_stopping.restore_best=false"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="mmsft-vs-hf-") as tmp:
        results["hf_trainer"] = hf_trainer_run(build_run_config(args.task, args.adapter, overrides), Path(tmp))
        results["mmsft"] = mmsft_run(build_run_config(args.task, args.adapter, overrides), Path(tmp))
    results["ratio"] = results["mmsft"]["samples_per_second"] / results["hf_trainer"]["samples_per_second"]
    cfg = build_run_config(args.task, args.adapter, overrides)
    results["settings"] = {"task": args.task, "adapter": args.adapter, "epochs": args.epochs, "batch_size": cfg.train.batch_size,
                           "lr": cfg.train.lr, "schedule": cfg.train.schedule, "backbone": cfg.model.backbone,
                           "adapter_options": {k: v for k, v in vars(cfg.adapters[args.adapter].options).items()}}
    write_json(RESULTS / "vs_hf_trainer.json", results)
    command = "python benchmarks/vs_hf_trainer.py " + " ".join(sys.argv[1:])
    lines = header("mmsft runner vs Hugging Face Trainer", command.strip()) + [
        f"Same model ({cfg.model.backbone} + {args.adapter} + mean-pooled head), same tokenized data, same hyperparameters "
        f"({args.epochs:g} epochs, batch {cfg.train.batch_size}, lr {cfg.train.lr:g}, {cfg.train.schedule} schedule, warmup "
        f"{cfg.train.warmup_ratio}, weight decay {cfg.train.weight_decay}, length-grouped batches), same seed; evaluation code shared.", "",
        "| runner | train samples/s | test accuracy | train s |", "|---|---|---|---|",
        *[f"| {name} | {r['samples_per_second']:.1f} | {r['accuracy']:.4f} | {r['train_seconds']:.0f} |" for name, r in
          (("mmsft", results["mmsft"]), ("HF Trainer", results["hf_trainer"]))],
        "", f"**Ratio (mmsft samples/s ÷ Trainer samples/s): {results['ratio']:.2f}**", ""]
    (RESULTS / "vs_hf_trainer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
