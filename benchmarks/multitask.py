"""Several heads on one backbone: finance_sentiment + banking77_intent + medical_abstracts trained
together (``tasks/multitask_text.yaml``) against three separate runs with the same adapter method.

    python benchmarks/multitask.py [--adapter lora] [--multi-adapter PRESET] [--set key=value ...] [--quick]

Per task: test accuracy and macro-F1 of the multi-task run (``mmsft train multitask_text --adapter A``;
``--multi-adapter own``: the task's own ``adapters:`` stack, e.g. with task-specific adapters) and of the task's own run (``mmsft train TASK --adapter A``, its shipped defaults); the parameters each setup stores on disk
(tensors in the run folders' ``model/``) beside three separate full fine-tunes; total train time.
Every run is ``mmsft train`` in a fresh process, saved under ``--work`` and reused unless ``--fresh``.
Writes benchmarks/results/multitask.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, train_in_subprocess, write_json  # noqa: E402

MEMBERS = ["finance_sentiment", "banking77_intent", "medical_abstracts"]
MULTI = "multitask_text"
QUICK = ["train.max_steps=6", "train.eval_every_steps=3"]


def backbone_params(name: str = "minilm-l6") -> int:
    """The shared backbone's parameters, counted: what one full fine-tune stores besides its head."""
    from transformers import AutoModel

    from mmsft.zoo import resolve

    return sum(p.numel() for p in AutoModel.from_pretrained(resolve(name).path).parameters())


def stored_params(run: Path) -> int:
    """Tensor elements in the run's saved model (adapters, heads, modules)."""
    import math

    from safetensors import safe_open

    total = 0
    for path in (run / "model").rglob("*.safetensors"):
        with safe_open(str(path), "pt") as fh:
            total += sum(math.prod(fh.get_slice(key).get_shape()) for key in fh.keys())
    return total


def stage(name: str, task: str, adapter: str | None, overrides: list[str], work: Path, fresh: bool) -> dict:
    path = work / "stages" / f"{name}.json"
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    folder = work / "runs" / name
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    stamp = measured()
    metrics = train_in_subprocess(task, adapter, folder, overrides)
    row = {"name": name, "test": metrics["test"], "train_seconds": metrics["train_seconds"], "stored_params": stored_params(folder),
           "trainable_params": metrics["trainable_params"], "epochs": metrics["epochs_completed"], "overrides": overrides, **stamp}
    write_json(path, row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", default="lora", help="adapter preset of the three separate runs")
    ap.add_argument("--multi-adapter", default=None, help="adapter preset of the multi-task run (default: --adapter; own: the task's own stack)")
    ap.add_argument("--set", nargs="*", default=[], metavar="key=value", help="overrides of the multi-task run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path("runs") / ("bench-multitask-quick" if args.quick else "bench-multitask")
    out = work if args.quick else RESULTS
    extra = QUICK if args.quick else []
    multi_label = args.multi_adapter or args.adapter
    multi_preset = None if multi_label == "own" else multi_label
    multi = stage(f"{MULTI}-{multi_label}", MULTI, multi_preset, [*extra, *args.set], work, args.fresh)
    separate = {t: stage(f"{t}-{args.adapter}", t, args.adapter, extra, work, args.fresh) for t in MEMBERS}
    rows = []
    for task in MEMBERS:
        for metric in ("accuracy", "f1_macro"):
            rows.append({"task": task, "setup": "multitask", "metric": metric, "value": multi["test"][f"{task}/{metric}"],
                         "stored_params": multi["stored_params"], "train_seconds": multi["train_seconds"]})
            rows.append({"task": task, "setup": "separate", "metric": metric, "value": separate[task]["test"][metric],
                         "stored_params": separate[task]["stored_params"], "train_seconds": separate[task]["train_seconds"]})
    write_json(out / "multitask.json", {"rows": rows, "runs": {"multitask": multi, **separate}, "adapter": args.adapter})
    sep_params = sum(s["stored_params"] for s in separate.values())
    full_params = 3 * backbone_params()
    sep_seconds = sum(s["train_seconds"] for s in separate.values())
    lines = header("Multi-task: three tasks on one backbone vs three separate runs", command_line("multitask.py"))
    if args.quick:
        lines += ["**QUICK SMOKE RUN**: the figures mean nothing.", ""]
    multi_cmd = f"mmsft train {MULTI}" + (f" --adapter {multi_preset}" if multi_preset else "")
    lines += [f"Multi-task: `{multi_cmd}` ({multi['epochs']} epochs, overrides `{' '.join(multi['overrides']) or 'none'}`, "
              f"{multi['trainable_params']:,} trainable parameters); separate: `mmsft train TASK --adapter {args.adapter}`, "
              "each task's shipped defaults.", "",
              "| task | metric | multi-task | separate | difference | within 1 point |", "|---|---|---|---|---|---|"]
    for task in MEMBERS:
        for metric in ("accuracy", "f1_macro"):
            a, b = multi["test"][f"{task}/{metric}"], separate[task]["test"][metric]
            lines.append(f"| {task} | {metric} | {a:.4f} | {b:.4f} | {100 * (a - b):+.2f} | {'✅' if a >= b - 0.01 else '❌'} |")
    lines += ["", "| setup | parameters stored | train s |", "|---|---|---|",
              f"| multi-task ({multi_label}) | {multi['stored_params']:,} | {multi['train_seconds']:.0f} |",
              f"| three separate runs ({args.adapter}) | {sep_params:,} | {sep_seconds:.0f} |",
              f"| three separate full fine-tunes (backbone each) | {full_params:,} (+ heads) | - |", "",
              f"Stored parameters, multi-task / three full fine-tunes: {multi['stored_params'] / full_params:.3f} "
              f"(target < 0.5 {'✅' if multi['stored_params'] < 0.5 * full_params else '❌'}).", ""]
    (out / "multitask.md").write_text("\n".join(lines))
    print(f"wrote {out / 'multitask.md'}")


if __name__ == "__main__":
    main()
