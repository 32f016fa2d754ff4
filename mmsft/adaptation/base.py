"""The domain-adaptation method interface and its registry (``METHODS``).

A method turns one (source task, target domain) pair into a fine-tune: ``overrides`` returns the
task-config overrides the fine-tune runs with (an objective, a backbone folder), computed without
doing any work, so a benchmark can fingerprint and plan every cell up front; ``run_stage`` does the
expensive preparation the overrides point at (e.g. the MLM stage's adapted backbone), once, under a
lock, reused by every later call.  ``check`` rejects a method that cannot work with a config (DANN on a
frozen backbone has nothing to push) before anything trains.  Methods see the target domain only as
``MethodContext.texts["target"]``, a file of unlabelled texts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import from_dict
from ..registry import Registry

METHODS: Registry = Registry("domain-adaptation method", ["mmsft.adaptation.methods"])


@dataclass
class NoOptions:
    pass


@dataclass
class MethodContext:
    """What a method knows about one cell (built by the benchmark)."""

    cfg: Any  # the source task's RunConfig for this cell (adapter, seed and shared overrides applied)
    source: str
    target: Optional[str]  # None for methods that do not look at a target (source_only)
    seed: int
    options: Any  # the method's parsed Options
    texts: dict[str, Path] = field(default_factory=dict)  # "source" / "target" -> unlabelled training texts (JSONL)
    stage_dir: Optional[Path] = None  # where this cell's stage output lives (shared by cells with the same stage key)
    threads: int = 0


class Method:
    """Subclasses set ``name``, ``Options``, ``needs_target``, ``description`` and override the hooks."""

    name = ""
    Options: type = NoOptions
    needs_target = True  # False: the trained model does not depend on the target (one model scores every target)
    description = ""

    def parse_options(self, raw: Any, path: str) -> Any:
        return from_dict(self.Options, raw or {}, path)

    def check(self, cfg, options) -> None:
        """Raise ``UserError`` when the method cannot work with ``cfg`` (before anything runs)."""

    def stage_key(self, ctx: MethodContext) -> Optional[dict]:
        """What the stage's output depends on (None: the method has no stage)."""
        return None

    def stage_name(self, ctx: MethodContext) -> str:
        """The folder (under ``stages/<method>/``) of the cell's stage; cells whose stages are the same
        work may share one."""
        return f"{ctx.source}__{ctx.target}"

    def overrides(self, ctx: MethodContext) -> list[str]:
        """``key=value`` overrides of the source task config for the fine-tune."""
        return []

    def run_stage(self, ctx: MethodContext) -> float:
        """Do the stage's work if its output is missing; returns the seconds spent (0 when reused)."""
        return 0.0


def register_method(cls: type) -> type:
    """Class decorator: register one instance under ``cls.name`` (methods keep no state)."""
    METHODS.add(cls.name, cls())
    return cls


def once(folder: Path, done: Callable[[], bool], build: Callable[[], None], poll: float = 5.0) -> float:
    """Run ``build`` unless ``done()``; a parallel worker building the same folder is waited for
    (an exclusive lock next to it) instead of duplicated.  Returns the seconds ``build`` took (0 if skipped)."""
    from ..atomic import FolderLock, FolderLocked

    lock = folder.with_name(f".{folder.name}.lock")  # a sibling: the stage folder itself is installed atomically
    lock.mkdir(parents=True, exist_ok=True)
    while not done():
        try:
            with FolderLock(lock):
                if done():
                    return 0.0
                tick = time.perf_counter()
                build()
                return time.perf_counter() - tick
        except FolderLocked:
            time.sleep(poll)
    return 0.0
