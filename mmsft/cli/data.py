"""``mmsft data check`` and ``mmsft data augment``: data quality report / cleaned copy, augmented copy."""
from __future__ import annotations

import json
from pathlib import Path

from .main import command


@command("data", "Check a task's data (duplicates, leakage, label noise, lengths, balance, diversity) or augment it.")
def _data(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    check = sub.add_parser("check", help="write a data-quality report (Markdown + PNGs + check.json) for a task",
                           description="Report exact/near duplicates and train/test leakage, conflicting labels, label-noise suspects "
                                       "(confident learning on frozen MiniLM embeddings), token lengths and truncation, class balance, "
                                       "diversity, and a verdict list of what to fix first.")
    check.add_argument("task", help="task name from tasks/ or a path to a task YAML")
    check.add_argument("--out", help="report folder (default: runs/data-check-TASK)")
    check.add_argument("--fix", metavar="OUT", help="also write a cleaned copy of the data (and its task.yaml) to the new folder OUT; "
                                                    "source files are never touched")
    check.add_argument("--skip", default="", help="comma-separated sections to skip: duplicates, lengths, balance, noise, diversity "
                                                  "(noise and diversity embed the training rows, the slow part)")
    check.add_argument("overrides", nargs="*", metavar="key=value", help="task config overrides, e.g. data.root=/my/data")

    augment = sub.add_parser("augment", help="materialise an augmented copy of a task's data (train only) with its own task.yaml",
                             description="Write OUT/train.jsonl (original train rows + new rows), validation.jsonl and test.jsonl "
                                         "(unchanged: augmented rows never enter them) and OUT/task.yaml.")
    augment.add_argument("task", help="task name from tasks/ or a path to a task YAML")
    augment.add_argument("--method", required=True, help="augmentation method (see --list)")
    augment.add_argument("--out", help="output folder (default: runs/augment-TASK-METHOD)")
    augment.add_argument("--factor", type=float, default=1.0, help="new rows per train row (default 1)")
    augment.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    augment.add_argument("overrides", nargs="*", metavar="key=value", help="method options, e.g. p=0.2; data.* / model.* keys override the task")

    methods = sub.add_parser("methods", help="list the augmentation methods and the task kinds each fits")
    del methods

    def run(args):
        if args.action == "check":
            return _check(args)
        if args.action == "augment":
            return _augment(args)
        if args.action == "methods":
            from ..augment import METHODS

            for name, method in METHODS.items():
                print(f"{name:16s} {','.join(method.kinds):24s} {method.description}")
            return 0
        p.print_help()
        return 2
    p.set_defaults(func=run)


def _check(args) -> int:
    from ..dataqc import check_task
    from ..spec import build_run_config

    cfg = build_run_config(args.task, None, args.overrides)
    command = " ".join(["mmsft data check", args.task, *(["--skip", args.skip] if args.skip else []), *args.overrides])
    out_dir, results = check_task(cfg, Path(args.out) if args.out else None, args.skip.split(","),
                                  Path(args.fix) if args.fix else None, command)
    verdicts = json.loads((out_dir / "check.json").read_text())["verdicts"]
    print(f"report: {out_dir / 'report.md'}")
    for v in verdicts[:5]:
        print(f"  [{v['severity']}] {v['title']}")
    if args.fix:
        fix = json.loads((Path(args.fix) / "fix.json").read_text())
        print(f"cleaned copy: {args.fix} ({fix['rows_in']} -> {fix['rows_out']} rows; removed {fix['removed']})")
    return 0


def _augment(args) -> int:
    from ..augment.materialise import materialise

    task_overrides = [o for o in args.overrides if o.split("=", 1)[0].startswith(("data.", "model.", "train."))]
    options = [o for o in args.overrides if o not in task_overrides]
    out, stats = materialise(args.task, args.method, Path(args.out) if args.out else None, args.factor, args.seed, options, task_overrides)
    print(json.dumps({"out": str(out), **stats}, indent=2))
    return 0
