"""The commands: train, eval, predict, tasks, models."""
from __future__ import annotations

import json
from pathlib import Path

from .main import command


@command("train", "Fine-tune a registered task (name or YAML path) with an adapter preset. "
                  "Extra task folders: MMSFT_TASKS_PATH (and MMSFT_ADAPTERS_PATH for presets), os.pathsep-separated.")
def _train(p):
    p.add_argument("task", help="task name from tasks/ or MMSFT_TASKS_PATH (see `mmsft tasks list`), or a path to a task YAML")
    p.add_argument("--adapter", help="adapter preset from adapters/ (full, lora, frozen, ...) or a YAML path; several, "
                                     "comma-separated, stack in that order (e.g. frozen_top2,lora)")
    p.add_argument("--output", help="run folder (default: runs/TASK-ADAPTER-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN", help="continue a crashed run from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4 adapter.r=8 data.root=/data")

    def run(args):
        from ..pipeline import train
        from ..spec import build_run_config, load_run_config

        if args.resume:
            cfg = load_run_config(args.resume)
            run_dir = train(cfg, Path(args.resume), resume=True)
        else:
            cfg = build_run_config(args.task, args.adapter, args.overrides)
            if args.output:
                cfg.output_dir = args.output
            run_dir = train(cfg)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        print(json.dumps({"run": str(run_dir), "test": metrics["test"], "train_seconds": metrics["train_seconds"]}, indent=2))
    p.set_defaults(func=run)


def _add_run_overrides(p) -> None:
    """``--set``: data and decoding settings of a trained run (what ``spec.RUN_OVERRIDABLE`` allows)."""
    p.add_argument("--set", nargs="+", default=[], metavar="key=value", dest="overrides",
                   help="change data or decoding settings of the run, e.g. data.generate.num_beams=4 "
                        "data.generate.max_new_tokens=64 data.root=DIR")


@command("eval", "Evaluate a trained run on a split of its task's data.")
def _eval(p):
    p.add_argument("run", help="run folder written by `mmsft train`")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    _add_run_overrides(p)

    def run(args):
        from ..pipeline import evaluate_run

        out = evaluate_run(args.run, args.split, args.overrides)
        print(json.dumps({k: v for k, v in out.metrics.items() if not isinstance(v, (list, dict))}, indent=2))
    p.set_defaults(func=run)


@command("predict", "Predict with a trained run on inputs given on the command line, or in bulk from a file or "
                    "folder (--input FILE|FOLDER --output preds.jsonl).")
def _predict(p):
    p.add_argument("run", help="run folder written by `mmsft train`")
    p.add_argument("inputs", nargs="*", help="texts (or image paths for image tasks)")
    p.add_argument("--out", metavar="DIR", help="image tasks: folder for the annotated images and JSON boxes (default: RUN/predictions; "
                                                "with --input: none unless given)")
    p.add_argument("--task", help="multi-task runs: the member task whose head predicts")
    bulk = p.add_argument_group("bulk prediction (mmsft.bulk)")
    bulk.add_argument("--input", metavar="FILE|FOLDER", help="a .csv / .tsv / .jsonl / .txt file of inputs, or a folder of images")
    bulk.add_argument("--output", metavar="FILE", help="JSON lines, one per input, with the input's id first (required with --input)")
    bulk.add_argument("--batch-size", type=int, help="inputs per predict call (default: the run's train.eval_batch_size)")
    bulk.add_argument("--text-column", help="the input column (default: the task's text / source column, else 'text')")
    bulk.add_argument("--id-column", help="the id column kept in the output (default: 'id' when present, else the row number)")
    _add_run_overrides(p)

    def run(args):
        from ..errors import UserError

        if args.task:
            args.overrides = [*args.overrides, f"data.predict_task={args.task}"]
        if args.input or args.output:
            if args.inputs or not (args.input and args.output):
                raise UserError("bulk prediction takes --input and --output and no positional inputs", where="command line",
                                expected="mmsft predict RUN --input FILE|FOLDER --output preds.jsonl")
            from ..bulk import predict_file

            summary = predict_file(args.run, args.input, args.output, batch_size=args.batch_size, text_column=args.text_column,
                                   id_column=args.id_column, out_dir=args.out, overrides=args.overrides)
            print(json.dumps(summary))
            return 0
        if not args.inputs:
            raise UserError("nothing to predict", where="command line", expected="inputs, or --input FILE --output preds.jsonl")
        from ..pipeline import predict_run

        for row in predict_run(args.run, args.inputs, args.out, args.overrides):
            print(json.dumps(row, ensure_ascii=False))
    p.set_defaults(func=run)


@command("merge-adapters", "Fold a run's LoRA / DoRA adapters into the base weights (peft merge_and_unload) and "
                            "write a copy of the run whose backbone is plain weights.")
def _merge_adapters(p):
    p.add_argument("run", help="run folder written by `mmsft train` with a lora or dora adapter")
    p.add_argument("--out", required=True, help="new run folder for the merged copy")

    def run(args):
        from ..pipeline import merge_run

        out = merge_run(args.run, args.out)
        print(json.dumps({"run": str(out), "adapters": "merged into the base weights"}, indent=2))
    p.set_defaults(func=run)


@command("tasks", "List the registered tasks or show one.")
def _tasks(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="one line per task: name, kind, domain, backbone")
    show = sub.add_parser("show", help="print a task's YAML with its path")
    show.add_argument("name")

    def run(args):
        from .. import paths
        from ..config import load_yaml
        from ..spec import list_names, task_path

        if args.action == "show":
            path = task_path(args.name)
            print(f"# {path}\n{path.read_text()}")
            return 0
        for name in list_names(paths.task_dirs()):
            spec = load_yaml(task_path(name))
            backbone = (spec.get("model") or {}).get("backbone", "minilm-l6")
            print(f"{name:28s} {spec.get('kind', '?'):22s} {spec.get('domain', ''):12s} {backbone}")
    p.set_defaults(func=run)


@command("models", "List the offline model zoo.")
def _models(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="zoo entries, their family, package and whether the weights are installed (or carried: MMSFT_ZOO_DIR)")

    def run(args):
        import importlib.util

        from ..zoo import ZOO, carried_folder

        for name, entry in ZOO.items():
            module = entry.package.replace("-", "_")
            # carried: weights under MMSFT_ZOO_DIR, used instead of the package (mmsft.zoo.base)
            status = "carried" if carried_folder(name) else "installed" if importlib.util.find_spec(module) else "missing"
            size = f"{entry.params_millions:g}M" if entry.params_millions else "?"
            print(f"{name:20s} {entry.family:13s} {size:>7s}  {status:9s}  {entry.install}")
    p.set_defaults(func=run)
