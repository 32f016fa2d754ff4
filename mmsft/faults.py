"""Fault injection: the process SIGKILLs itself at a named point, so crash-safety trials hit exact places.

Why: a parent that kills its child "at a random time" cannot say where the kill landed, and a kill
that happens to fall between two writes proves little.  Here the code under test reports named
*points* and, when asked to, dies at one of them with ``SIGKILL`` (no ``finally``, no ``atexit``, no
flush: what a power cut or the OOM killer does).  Unset, ``point()`` costs one environment lookup.

Environment:

* ``MMSFT_FAULT=<point>:<n>[:<glob>]``: die at the ``n``-th time (1-based, counted in this process)
  ``<point>`` is reached with a path matching ``<glob>`` (``fnmatch``, default ``*``).
* ``MMSFT_FAULT_TRACE=<file>``: append one JSON line per point reached (``{"point", "n", "path"}``),
  so a probe run lists every place a trial may pick.
* ``MMSFT_FAULT_LOG=<file>``: where the dying process writes (fsync-ed) ``{"killed": point, "n",
  "path"}`` just before the kill: the proof that it died there and not elsewhere.

Points reported by mmsft (``path`` in brackets):

* ``step`` [``forward`` | ``backward`` | ``update``]: a training micro-batch after its forward pass,
  after its backward pass, and after the optimizer update before the scheduler step (runner);
* ``eval`` [``forward``]: each outermost module call while the runner evaluates (validation);
* ``write`` [target file]: an atomic file write whose data is fsync-ed in its temporary file, just
  before the rename (``mmsft.atomic``);
* ``folder`` [target folder]: an atomic folder, complete and fsync-ed, before its rename; ``folder.swap``
  between moving the old folder aside and moving the new one in (a replaced folder);
* ``remove`` [folder]: a folder renamed aside for deletion, before it is deleted;
* ``final`` [run folder]: training is over and the run's final save (test evaluation, model, report,
  metrics.json) begins (pipeline).

Only the standard library is imported (torch lazily in ``watch_forwards``): ``mmsft.atomic`` uses it.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
from collections import Counter
from typing import Iterator, Optional

FAULT, TRACE, LOG = "MMSFT_FAULT", "MMSFT_FAULT_TRACE", "MMSFT_FAULT_LOG"

_counts: Counter = Counter()


def _target() -> Optional[tuple[str, int, str]]:
    spec = os.environ.get(FAULT)
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    count, _, glob = rest.partition(":")
    try:
        return name, int(count), glob or "*"
    except ValueError:
        raise ValueError(f"{FAULT}={spec!r}: expected <point>:<n>[:<glob>]") from None


def active(name: str) -> bool:
    """Whether point ``name`` is traced or targeted (callers skip setting up costly points otherwise)."""
    target = _target()
    return bool(os.environ.get(TRACE)) or (target is not None and target[0] == name)


def _append(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def point(name: str, path: object = "") -> None:
    """Report point ``name`` (``path``: what it is about); dies here when ``MMSFT_FAULT`` says so."""
    trace, target = os.environ.get(TRACE), _target()
    if not trace and target is None:
        return
    path = str(path)
    if target is not None and target[0] == name and fnmatch.fnmatchcase(path, target[2]):
        _counts[name] += 1
        if _counts[name] == target[1]:
            log = os.environ.get(LOG)
            if log:
                _append(log, {"killed": name, "n": target[1], "path": path, "pid": os.getpid()})
            os.kill(os.getpid(), signal.SIGKILL)
    if trace:
        _counts[("trace", name)] += 1
        _append(trace, {"point": name, "n": _counts[("trace", name)], "path": path})


@contextlib.contextmanager
def watch_forwards(name: str) -> Iterator[None]:
    """Report point ``name`` [``forward``] at every outermost ``nn.Module`` call inside the block.

    Installs global forward hooks only when ``name`` is traced or targeted (they only count)."""
    if not active(name):
        yield
        return
    from torch.nn.modules import module as nn_module

    depth = [0]

    def pre(_module, _args):
        depth[0] += 1
        if depth[0] == 1:
            point(name, "forward")

    def post(_module, _args, _output):
        depth[0] -= 1

    handles = [nn_module.register_module_forward_pre_hook(pre), nn_module.register_module_forward_hook(post)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
