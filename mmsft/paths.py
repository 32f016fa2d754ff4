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


def tasks_dir() -> Path:
    return Path(os.environ.get("MMSFT_TASKS_DIR", PROJECT_DIR / "tasks"))


def adapters_dir() -> Path:
    return Path(os.environ.get("MMSFT_ADAPTERS_DIR", PROJECT_DIR / "adapters"))


def runs_dir() -> Path:
    return Path(os.environ.get("MMSFT_RUNS_DIR", Path.cwd() / "runs"))
