"""Commands that make new models from trained runs: distill, merge, compress.

Each writes a run folder that ``mmsft eval`` / ``predict`` accept, and prints a JSON summary.
"""
from __future__ import annotations

import json

from .main import command


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=2, default=str))


@command("distill", "Train a student on a task with a trained teacher run: logit (and hidden-state) KD for classification, "
                    "sequence- or token-level KD for generation.")
def _distill(p):
    p.add_argument("task", help="task name from tasks/ or a task YAML (the data the student trains on)")
    p.add_argument("--teacher", required=True, metavar="RUN", help="a finished run folder (the teacher stays frozen)")
    p.add_argument("--student", required=True, metavar="BACKBONE|RUN",
                   help="a zoo name or local model folder, a run folder, or '{from: RUN, layers: K}' (the run's backbone cut to its first K blocks)")
    p.add_argument("--layers", type=int, metavar="K", help="with a run as --student: keep its first K blocks")
    p.add_argument("--adapter", help="the student's adapter preset(s) (default: full)")
    p.add_argument("--mode", default="auto", choices=["auto", "logits", "token", "sequence"],
                   help="auto: logits for classification, sequence for generation; token: token-level KD (same vocabulary only)")
    p.add_argument("--output", help="run folder (default: runs/TASK-distill-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted distillation in --output (teacher decoding included)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="distillation options (alpha=0.5 temperature=2 hidden_weight=1 hidden_layers=[0,1,2] cache=false) "
                        "and task overrides (train.epochs=3)")

    def run(args):
        from ..distill.run import distill_run

        out = distill_run(args.task, args.teacher, args.student, layers=args.layers, adapter=args.adapter, mode=args.mode,
                          overrides=args.overrides, output=args.output, resume=args.resume)
        metrics = json.loads((out / "metrics.json").read_text())
        _print({"run": str(out), "test": metrics["test"], "train_seconds": metrics.get("train_seconds"),
                "distill": json.loads((out / "distill.json").read_text())})
    p.set_defaults(func=run)


@command("merge", "Merge runs of one architecture: weight soups (average, greedy_soup) or task vectors against the base "
                  "(task_arithmetic, ties, dare); LoRA runs through peft's add_weighted_adapter.")
def _merge(p):
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders (same backbone)")
    p.add_argument("--method", required=True, choices=["average", "greedy_soup", "task_arithmetic", "ties", "dare"])
    p.add_argument("--weights", nargs="+", type=float, help="one weight per run (default: 1 each)")
    p.add_argument("--scale", type=float, default=1.0, metavar="λ", help="task vectors: θ = base + λ · merged task vector (default 1)")
    p.add_argument("--density", type=float, default=0.2, help="ties / dare: share of each task vector kept (default 0.2)")
    p.add_argument("--with-base", type=float, default=0.0, metavar="λ", dest="with_base",
                   help="move the result toward the pretrained base: (1-λ)·merged + λ·base (default 0)")
    p.add_argument("--lora", default="auto", choices=["auto", "peft", "delta"],
                   help="LoRA runs: peft's add_weighted_adapter (auto for LoRA) or explicit ΔW = BA sums (auto for DoRA)")
    p.add_argument("--seed", type=int, default=0, help="dare: seed of the random drop")
    p.add_argument("--no-test", action="store_true", dest="no_test", help="skip scoring the result on test")
    p.add_argument("--out", required=True, metavar="RUN", help="new run folder (runs of different label sets: one sub-folder per task)")

    def run(args):
        from ..merge.run import MergeRequest, merge_runs

        request = MergeRequest(method=args.method, weights=args.weights, scale=args.scale, density=args.density,
                               with_base=args.with_base, lora=args.lora, seed=args.seed, test=not args.no_test)
        _print(merge_runs(args.runs, args.out, request))
    p.set_defaults(func=run)


@command("compress", "Prune (attention heads by importance, top layers, magnitude), quantize (int8) and/or export (ONNX) "
                     "a trained run into a new run folder.")
def _compress(p):
    p.add_argument("run", help="a finished run folder")
    p.add_argument("--prune", action="append", default=[], metavar="heads[:share]|layers[:n]|magnitude[:sparsity]",
                   help="repeatable, applied in order: heads:0.3 removes the 30%% least important heads (Michel et al. 2019), "
                        "layers:2 drops the top 2 blocks, magnitude:0.5 zeroes half the block weights")
    p.add_argument("--refit-steps", type=int, default=0, dest="refit_steps", metavar="N",
                   help="after pruning, fine-tune N steps on the task's train split (recovers layer dropping)")
    p.add_argument("--quantize", choices=["int8_dynamic", "int8_static"], help="int8 linear layers in the blocks")
    p.add_argument("--backend", default="auto", choices=["auto", "torchao", "torch.ao"],
                   help="int8 backend (auto: torchao unless a timed probe finds it slower than torch.ao)")
    p.add_argument("--export", choices=["onnx"], help="also write model/model.onnx (fp32 graph, onnxruntime parity checked)")
    p.add_argument("--importance-batches", type=int, default=16, dest="importance_batches", help="train batches for head importance")
    p.add_argument("--calibration-batches", type=int, default=16, dest="calibration_batches", help="train batches for int8_static scales")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", required=True, metavar="RUN", help="new run folder")

    def run(args):
        from ..compress.run import compress_run

        out = compress_run(args.run, args.out, args.prune, args.quantize, args.export, args.backend, args.refit_steps,
                           args.importance_batches, args.calibration_batches, args.threads)
        metrics = json.loads((out / "metrics.json").read_text())
        record = json.loads((out / "compress.json").read_text())
        _print({"run": str(out), "test": metrics["test"], "steps": [s["step"] for s in record["steps"]],
                "quantize_backend": (record.get("quantize") or {}).get("backend"), "onnx": record.get("onnx")})
    p.set_defaults(func=run)
