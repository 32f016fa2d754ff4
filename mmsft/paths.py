"""Where things live: the data root, the cache, the shipped task and adapter folders, runs."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def data_root() -> Path:
    """Shared datasets; ``MMSFT_DATA_ROOT`` overrides the default ``../shared/data``."""
    env = os.environ.get("MMSFT_DATA_ROOT")
    return Path(env).expanduser() if env else (PROJECT_DIR.parent / "shared" / "data")


def cache_dir() -> Path:
    """Converted weights and tokenized datasets; never inside the repository."""
    env = os.environ.get("MMSFT_CACHE")
    base = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmsft"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _search_path(env: str, shipped: Path) -> list[Path]:
    """User folders from ``env`` (``os.pathsep``-separated) first, then the shipped folder."""
    extra = [Path(p).expanduser() for p in os.environ.get(env, "").split(os.pathsep) if p]
    return [*extra, shipped]


def task_dirs() -> list[Path]:
    """Where task YAMLs are looked up: ``MMSFT_TASKS_PATH`` folders, then the shipped ``tasks/``."""
    return _search_path("MMSFT_TASKS_PATH", PROJECT_DIR / "tasks")


def adapter_dirs() -> list[Path]:
    """Where adapter presets are looked up: ``MMSFT_ADAPTERS_PATH`` folders, then ``adapters/``."""
    return _search_path("MMSFT_ADAPTERS_PATH", PROJECT_DIR / "adapters")


def runs_dir() -> Path:
    return Path(os.environ.get("MMSFT_RUNS_DIR", Path.cwd() / "runs"))


def resolve_data_path(spec_data, relative: str) -> Path:
    """``relative`` under a task's data root (its ``data.root``, else ``data_root()``)."""
    root = Path(spec_data.root).expanduser() if getattr(spec_data, "root", None) else data_root()
    return root / relative
