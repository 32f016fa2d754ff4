"""Crash-safe checkpoints: trainable weights, optimizer, scheduler, RNG and data position, no pickle.

A checkpoint is a folder ``step-<8 digits>`` holding

* ``trainable.safetensors``: the model's trainable weights;
* ``training.safetensors``: every tensor of the optimizer state (AdamW: ``exp_avg``, ``exp_avg_sq``,
  ``step`` per parameter), the scheduler state and the torch / CUDA RNG states;
* ``training.json``: everything else of those states as tagged JSON (optimizer ``param_groups``,
  scheduler numbers, Python and NumPy RNG states; tuples, non-string keys and NumPy arrays tagged
  so that they come back as the same types, tensors referenced by their key in the safetensors file);
* ``state.json``: the ``TrainState`` (step, epoch, position in the epoch, best metric, history);
* optional ``<name>.safetensors`` files the caller adds (``extra_tensors``: best weights, callback states);
* ``manifest.json``, written last: size and sha256 of each of the files above.

The folder is built under a temporary name and renamed into place (``mmsft.atomic``: every file and
the folder fsync-ed), so a crash during a save never leaves a ``step-*`` folder.  ``latest_checkpoint``
still verifies every candidate against its manifest and falls back to the previous checkpoint when the
newest one is torn or truncated (disk trouble, a partial copy).  Loading reads only safetensors and
JSON: a pickle file in a checkpoint folder (``training.pt`` from an older mmsft, or planted) is never
opened.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from safetensors.torch import load_file

from .. import atomic

FORMAT = "mmsft-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "trainable.safetensors"
TENSORS = "training.safetensors"
TRAINING = "training.json"
STATE = "state.json"
REQUIRED_FILES = (WEIGHTS, TENSORS, TRAINING, STATE)
CHECKPOINT_NAME = re.compile(r"step-(\d+)")
LEGACY_TEMP = ".tmp-step-*"  # temporary folders of the pickle-based format


class CheckpointError(RuntimeError):
    """A checkpoint that is incomplete, corrupt or not in this format."""


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    samples_seen: int = 0
    train_seconds: float = 0.0
    best_metric: Optional[float] = None
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss / gradient (train.nonfinite=skip)
    overflow_steps: int = 0  # optimizer steps the fp16 grad scaler skipped (gradient overflow)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- tagged JSON + tensors (instead of pickle) ------------------------------------------------------
_TAGS = ("__tensor__", "__tuple__", "__dict__", "__ndarray__", "__npscalar__")


def encode_state(obj: Any, path: str, tensors: dict) -> Any:
    """JSON-able form of ``obj``; its tensors go into ``tensors`` under keys derived from ``path``.

    Handles what optimizer / scheduler / RNG states hold: tensors, tuples, lists, dicts (any hashable
    JSON-able keys), NumPy arrays and scalars, str / int / float (inf and nan included) / bool / None.
    Anything else (a callable object's attributes, say) raises ``TypeError`` naming its path: a
    checkpoint never falls back to pickle.
    """
    if isinstance(obj, torch.Tensor):
        key, n = path, 1
        while key in tensors:  # int 0 and str "0" under one dict would give the same key
            key, n = f"{path}#{n}", n + 1
        tensors[key] = obj.detach()
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"{path}: NumPy array of dtype {obj.dtype} cannot be stored without pickle")
        return {"__ndarray__": {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}}
    if isinstance(obj, np.generic):
        return {"__npscalar__": {"dtype": obj.dtype.str, "value": obj.item()}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: encode_state(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {"__dict__": [[encode_state(k, f"{path}/key{i}", tensors), encode_state(v, f"{path}/{k}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"{path}: {type(obj).__name__} cannot be stored in a checkpoint without pickle")


def decode_state(obj: Any, tensors: dict) -> Any:
    """Inverse of ``encode_state``: the same types and values (tensors from ``tensors``)."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag == "__tensor__":
            if value not in tensors:
                raise CheckpointError(f"tensor '{value}' is missing from {TENSORS}")
            return tensors[value]
        if tag == "__tuple__":
            return tuple(decode_state(v, tensors) for v in value)
        if tag == "__dict__":
            return {_hashable(decode_state(k, tensors)): decode_state(v, tensors) for k, v in value}
        if tag == "__ndarray__":
            return np.array(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        if tag == "__npscalar__":
            return np.dtype(value["dtype"]).type(value["value"])
    return {k: decode_state(v, tensors) for k, v in obj.items()}


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


# -- manifest -------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(path: Path) -> tuple:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


# checkpoint folder -> file signatures at its last successful verification, so that load_checkpoint does
# not hash again what latest_checkpoint just hashed (any change of size / mtime / inode hashes again)
_VERIFIED: dict[str, dict[str, tuple]] = {}


def verify_checkpoint(path: Path, *, reuse: bool = False) -> Optional[str]:
    """None when checkpoint folder ``path`` is complete and every file matches its manifest (size and
    sha256), else a short reason.  ``reuse``: trust an earlier verification in this process when no
    file changed since (same size, mtime, inode)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        legacy = " (written by an older mmsft: its pickled training.pt is never read)" if (path / "training.pt").exists() else ""
        return f"no {MANIFEST}{legacy}"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION or not isinstance(files, dict):
            return f"{MANIFEST} is not a {FORMAT} version {VERSION} manifest"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__})"
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        return f"{MANIFEST} does not list {', '.join(missing)}"
    key = str(path.resolve())
    signatures = {}
    for name, entry in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", MANIFEST):
            return f"{MANIFEST} lists a bad file name {name!r}"
        file = path / name
        try:
            signatures[name] = _signature(file)
        except OSError:
            return f"{name} is missing"
        if not isinstance(entry, dict) or signatures[name][0] != entry.get("size"):
            return f"{name} has {signatures[name][0]} bytes, the manifest says {entry.get('size') if isinstance(entry, dict) else '?'}"
    signatures[MANIFEST] = _signature(manifest_path)
    if reuse and _VERIFIED.get(key) == signatures:
        return None
    _VERIFIED.pop(key, None)
    for name, entry in files.items():
        if _sha256(path / name) != entry.get("sha256"):
            return f"{name} does not match its sha256 in the manifest"
    _VERIFIED[key] = signatures
    return None


# -- saving, finding, loading ---------------------------------------------------------------------
def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``step-<n>`` folder, oldest first (temporary ``.step-*`` names never match)."""
    if not Path(folder).is_dir():
        return []
    found = []
    for path in Path(folder).iterdir():
        match = CHECKPOINT_NAME.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete what a killed save left in ``folder``: temporary checkpoint folders, temporary files of
    other atomic writes there (``best.safetensors``) and old-format ``.tmp-step-*`` folders.  Call it
    from the one process that writes ``folder`` only."""
    folder = Path(folder)
    removed = atomic.remove_temps(folder, "*")
    for legacy in folder.glob(LEGACY_TEMP) if folder.is_dir() else []:
        atomic.remove_tree(legacy)
        removed.append(legacy)
    return removed


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: TrainState, keep: int = 1,
                    extra_tensors: Optional[Mapping[str, Mapping[str, torch.Tensor]]] = None) -> Path:
    """Write checkpoint ``folder/step-<state.step>`` atomically; keep the newest ``keep`` (<= 0: all).

    ``extra_tensors``: file name (``<name>.safetensors``, e.g. ``best.safetensors`` or a callback's
    state file) -> tensors, written inside the same atomic folder and listed in the same manifest, so
    that they are verified with it and a resume from an older checkpoint (the newest one was torn)
    never pairs its state with newer extras; ``load_extra_tensors(path, name)`` reads one back.

    Checkpoints of later steps than this one are from a timeline that was abandoned on resume (they
    failed verification) and are removed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    final = folder / f"step-{state.step:08d}"
    weights = model.trainable_state_dict()
    tensors: dict = {}
    training = {
        "format": FORMAT,
        "version": VERSION,
        "optimizer": encode_state(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": encode_state(scheduler.state_dict(), "scheduler", tensors),
        "rng": encode_state(rng_state(), "rng", tensors),
    }
    with atomic.atomic_folder(final, replace=True) as tmp:
        atomic.save_safetensors(tmp / WEIGHTS, weights, metadata={"format": "pt"})
        atomic.save_safetensors(tmp / TENSORS, tensors, metadata={"format": "pt"})
        atomic.write_json(tmp / TRAINING, training, indent=None)
        atomic.write_json(tmp / STATE, asdict(state), indent=1)
        names = list(REQUIRED_FILES)
        for name, extra in (extra_tensors or {}).items():
            atomic.save_safetensors(tmp / _extra_name(name), extra, metadata={"format": "pt"})
            names.append(name)
        entries = {name: {"size": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in names}
        atomic.write_json(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "step": state.step, "files": entries})
    others = [(step, path) for step, path in _checkpoints(folder) if path != final]
    stale = [path for step, path in others if step > state.step]
    older = [path for step, path in others if step < state.step]
    if keep > 0:
        stale += older[:max(0, len(older) - (keep - 1))]
    for path in stale:
        atomic.remove_tree(path)
    return final


def latest_checkpoint(folder: Path) -> Optional[Path]:
    """The newest checkpoint in ``folder`` that verifies against its manifest, or None.

    Each newer one that does not verify is skipped with a one-line warning on stderr.
    """
    for _step, path in reversed(_checkpoints(Path(folder))):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        print(f"mmsft: warning: skipping checkpoint {path}: {problem}", file=sys.stderr)
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from checkpoint ``path``; returns its ``TrainState``.

    Raises ``CheckpointError`` when ``path`` does not verify against its manifest.  Reads only
    safetensors and JSON.
    """
    path = Path(path)
    problem = verify_checkpoint(path, reuse=True)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    weights = load_file(str(path / WEIGHTS))
    missing = set(model.trainable_state_dict()) - set(weights)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}")
    training = json.loads((path / TRAINING).read_text(encoding="utf-8"))
    if training.get("format") != FORMAT or training.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: {TRAINING} is not {FORMAT} version {VERSION}")
    tensors = load_file(str(path / TENSORS))
    optimizer_state = decode_state(training["optimizer"], tensors)
    scheduler_state = decode_state(training["scheduler"], tensors)
    rng = decode_state(training["rng"], tensors)
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    set_rng_state(rng)
    saved = json.loads((path / STATE).read_text(encoding="utf-8"))
    known = {f.name for f in fields(TrainState)}
    return TrainState(**{k: v for k, v in saved.items() if k in known})


def _extra_name(name: str) -> str:
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors") or name in REQUIRED_FILES:
        raise ValueError(f"extra checkpoint file {name!r}: need a plain '<name>.safetensors' name other than {REQUIRED_FILES}")
    return name


def load_extra_tensors(path: Path, name: str) -> Optional[dict]:
    """Tensors of extra file ``name`` saved with checkpoint ``path`` (``save_checkpoint(extra_tensors=...)``),
    or None when the checkpoint's manifest does not list it.  Raises ``CheckpointError`` when ``path``
    does not verify."""
    path = Path(path)
    problem = verify_checkpoint(path, reuse=True)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    files = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]
    return load_file(str(path / _extra_name(name))) if name in files else None
