"""Entry point: builds argparse from the command registry; user errors (and the machine's: a full disk, a
read-only folder) exit 2 with one message."""
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
    # argparse stops positionals at an option: key=value overrides, and a command's optional positional
    # inputs (`predict RUN --task T "text"`), may follow options
    unknown = [e for e in extra if e.startswith("-") or not (hasattr(args, "overrides") and "=" in e or isinstance(getattr(args, "inputs", None), list))]
    if unknown:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    for e in extra:
        if hasattr(args, "overrides") and "=" in e:
            args.overrides = [*args.overrides, e]
        else:
            args.inputs = [*args.inputs, e]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"mmsft: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the machine's fault (disk full, read-only, permission): one line, not a traceback
        from ..atomic import RESOURCE_ERRNOS

        if exc.errno not in RESOURCE_ERRNOS:
            raise
        print(f"mmsft: error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmsft: interrupted (a run can continue from its last checkpoint with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # use `python -m mmsft`: running this file directly would register commands twice
    from mmsft.cli.main import main as _main

    sys.exit(_main())
