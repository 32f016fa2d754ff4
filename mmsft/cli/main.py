"""Entry point: builds argparse from the command registry; user errors exit 2 with one message."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError
from ..registry import Registry

COMMANDS: Registry = Registry("command")


def command(name: str, help: str):
    """Register ``fn(subparsers) -> parser`` whose parser sets ``func``."""
    def deco(fn):
        COMMANDS.add(name, (help, fn))
        return fn
    return deco


def build_parser() -> argparse.ArgumentParser:
    import importlib
    import pkgutil

    from .. import cli

    for module in pkgutil.iter_modules(cli.__path__):  # each command module registers itself
        if module.name != "main":
            importlib.import_module(f"{cli.__name__}.{module.name}")

    parser = argparse.ArgumentParser(prog="mmsft", description="Multimodal supervised fine-tuning and domain adaptation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, fn) in COMMANDS.items():
        fn(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (argparse stops positionals at an option)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error("unrecognized arguments: " + " ".join(extra))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"mmsft: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mmsft: interrupted (a run can continue from its last checkpoint with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # use `python -m mmsft`: running this file directly would register commands twice
    from mmsft.cli.main import main as _main

    sys.exit(_main())
