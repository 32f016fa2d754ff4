"""``mmsft bench cross-domain`` (transfer matrices with domain adaptation) and ``mmsft bench methods``."""
from __future__ import annotations

import json
from pathlib import Path

from .main import command

CROSS_DOMAIN = """\
Train on each source task's train split (per adapter, method and seed) and score every target task's
test split. Writes OUT/matrix.md, OUT/matrix.json and OUT/matrix.png: the in-domain diagonal, every
off-diagonal pair, the transfer gap (target in-domain minus transfer), means per adapter and method,
and the best method per pair. Tasks must share a label set (or map onto one with --label-map).
Reruns resume: finished cells are reused, a crashed fine-tune continues from its checkpoint, and
--fresh recomputes the planned cells. Methods (mmsft bench methods): source_only, target_mlm, dann;
they read only the target's unlabelled training texts. Extra key=value items set method options
(target_mlm.epochs=2, dann.weight=0.5) or override every fine-tune's task config (train.epochs=2)."""


@command("bench", "Benchmarks: cross-domain transfer matrices with domain adaptation (see `mmsft bench cross-domain --help`).")
def _bench(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    cd = sub.add_parser("cross-domain", help="train on each source task, score every target task (matrix: Markdown + JSON + PNG)",
                        description=CROSS_DOMAIN)
    cd.add_argument("--tasks", nargs="+", default=[], metavar="TASK", help="tasks that are both sources and targets (a square matrix)")
    cd.add_argument("--sources", nargs="+", default=[], metavar="TASK", help="source tasks (default: --tasks)")
    cd.add_argument("--targets", nargs="+", default=[], metavar="TASK", help="target tasks (default: --tasks)")
    cd.add_argument("--adapters", nargs="+", default=["lora"], metavar="PRESET", help="adapter presets (default: lora), e.g. lora frozen full")
    cd.add_argument("--methods", nargs="+", default=["source_only"], metavar="METHOD",
                    help="domain-adaptation methods (default: source_only), e.g. source_only target_mlm dann")
    cd.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3): train.seed = 42, 43, ...")
    cd.add_argument("--label-map", nargs="+", default=[], metavar="LABEL=SHARED",
                    help="map task labels onto shared names (neg=negative, or TASK:neg=negative for one task)")
    cd.add_argument("--out", help="benchmark folder (default: runs/cross-domain): cells/, stages/, texts/ and the matrix files")
    cd.add_argument("--fresh", action="store_true", help="recompute the planned cells (and their stages) instead of reusing them")
    cd.add_argument("--quick", action="store_true", help="smoke mode: 48 train rows, 6 steps, 4 MLM steps (numbers mean nothing)")
    cd.add_argument("--jobs", type=int, default=1, help="cells run at once, each in its own process (default 1)")
    cd.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    cd.add_argument("--config", metavar="YAML", help="benchmark settings from a YAML file (the same keys; command-line options win)")
    cd.add_argument("overrides", nargs="*", metavar="key=value", help="method options (dann.weight=0.5) or task overrides (train.epochs=2)")
    sub.add_parser("methods", help="list the domain-adaptation methods")

    def run(args):
        action = {"cross-domain": _cross_domain, "methods": _methods}.get(args.action)
        return action(args) if action else (p.print_help() or 2)
    p.set_defaults(func=run)


def _methods(args) -> int:
    from ..adaptation.base import METHODS

    for name, method in METHODS.items():
        print(f"{name:12s} {'per pair' if method.needs_target else 'per source'}  {method.description}")
    return 0


def _cross_domain(args) -> int:
    import shlex
    import sys

    from .. import paths
    from ..config import load_yaml
    from ..crossdomain.bench import run_benchmark
    from ..crossdomain.config import parse_bench, split_overrides
    from ..errors import UserError

    raw = dict(load_yaml(args.config)) if args.config else {}
    for key in ("tasks", "sources", "targets", "adapters", "methods"):  # `--methods dann train.epochs=2`: nargs took the override
        values = getattr(args, key)
        args.overrides += [v for v in values if "=" in v]
        setattr(args, key, [v for v in values if "=" not in v])
    method_items, task_items = split_overrides(args.overrides)
    label_map = {}
    for item in args.label_map:
        if "=" not in item:
            raise UserError(f"bad label mapping '{item}'", where="--label-map", expected="LABEL=SHARED or TASK:LABEL=SHARED")
        key, value = item.split("=", 1)
        label_map[key.strip()] = value.strip()
    given = {"tasks": args.tasks, "sources": args.sources, "targets": args.targets, "label_map": label_map}
    raw.update({k: v for k, v in given.items() if v})
    for key, default in (("adapters", ["lora"]), ("methods", ["source_only"]), ("seeds", 3), ("jobs", 1), ("threads", 1)):
        value = getattr(args, key)
        if value != default or key not in raw:
            raw[key] = value
    raw["quick"] = args.quick or raw.get("quick", False)
    raw["overrides"] = [*raw.get("overrides", []), *task_items]
    bench = parse_bench(raw, method_items)
    out = Path(args.out) if args.out else paths.runs_dir() / "cross-domain"
    command = "mmsft " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "mmsft bench cross-domain"
    data = run_benchmark(bench, out, args.fresh, command)
    print(json.dumps({"matrix": str(out / "matrix.md"), "summary": data["summary"]}, indent=2))
    return 0
