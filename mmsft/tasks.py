"""Registering tasks from Python: ``mmsft.tasks.register(spec)`` makes a task usable by name.

Why a folder on the search path rather than a dict in memory: every consumer of a task name
(``mmsft.train``, ``spec.task_path``, ``mmsft tasks list``, a multi-task member list, a subprocess
started by ``accelerate launch``) already looks names up in ``MMSFT_TASKS_PATH`` folders, so a
registered task is one validated YAML file in a folder that this process puts first on that path
(``os.environ``, inherited by child processes); nothing else changes.  ``folder=`` writes it into a
folder of your own instead (persistent; add it to ``MMSFT_TASKS_PATH`` in your shell to keep it).

``spec`` is a dict (the YAML as Python data), YAML text, or the path of a YAML file.  It is checked
exactly like ``mmsft train`` checks a task (unknown keys, types, plug-in options) before anything is
written; a registered name shadows a shipped task of the same name in this process.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from .errors import UserError

ENV = "MMSFT_TASKS_PATH"
_FOLDER: Optional[Path] = None  # this process's registry folder (created on first use)


def _process_folder() -> Path:
    global _FOLDER
    if _FOLDER is None or not _FOLDER.is_dir():
        _FOLDER = Path(tempfile.mkdtemp(prefix="mmsft-tasks-"))
    return _FOLDER


def _on_search_path(folder: Path) -> None:
    parts = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    if str(folder) not in parts:
        os.environ[ENV] = os.pathsep.join([str(folder), *parts])


def _as_dict(spec: Union[dict, str, os.PathLike]) -> dict:
    import yaml

    from .config import load_yaml

    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec and spec.strip().endswith((".yaml", ".yml"))):
        return load_yaml(spec)
    if not isinstance(spec, str):
        raise UserError(f"a task spec is a dict, YAML text or a YAML path, not {type(spec).__name__}", where="mmsft.tasks.register")
    try:
        data = yaml.safe_load(spec)
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", where="mmsft.tasks.register") from None
    if not isinstance(data, dict):
        raise UserError("the task spec must be a mapping of keys to values", where="mmsft.tasks.register")
    return data


def register(spec: Union[dict, str, os.PathLike], *, name: Optional[str] = None, folder: Union[str, os.PathLike, None] = None,
             adapter: Optional[str] = None) -> str:
    """Validate ``spec`` and make it a task named ``name`` (default: its ``name`` key); returns the name.

    ``adapter`` is the preset the check uses (default: the spec's own ``adapter``, else ``full``)."""
    import yaml

    from .atomic import write_text
    from .spec import build_run_config

    data = _as_dict(spec)
    name = name or data.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\:") or name.startswith("."):
        raise UserError(f"a registered task needs a plain 'name', got {name!r}", where="mmsft.tasks.register",
                        expected="name='my_task' or a 'name' key (letters, digits, _ and -)")
    data["name"] = name
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    with tempfile.TemporaryDirectory(prefix="mmsft-task-check-") as tmp:  # check before anything is installed
        probe = Path(tmp) / f"{name}.yaml"
        probe.write_text(text, encoding="utf-8")
        build_run_config(str(probe), adapter)
    target = Path(folder).expanduser() if folder is not None else _process_folder()
    write_text(target / f"{name}.yaml", f"# registered with mmsft.tasks.register\n{text}")
    _on_search_path(target.resolve())
    return name


def names() -> list[str]:
    """Every task name on the search path (registered, ``MMSFT_TASKS_PATH`` folders, shipped)."""
    from . import paths
    from .spec import list_names

    return list_names(paths.task_dirs())


def spec(name: str) -> dict[str, Any]:
    """A task's YAML as a dict (registered or shipped)."""
    from .config import load_yaml
    from .spec import task_path

    return load_yaml(task_path(name))


__all__ = ["names", "register", "spec"]
