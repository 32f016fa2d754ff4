"""Crash-safe checkpoints: trainable weights, optimizer, scheduler, RNG and data position.

Each checkpoint is written to a temporary folder and renamed into place, so a crash during a save
never leaves a checkpoint that looks complete but is not.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file


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


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: TrainState, keep: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{state.step:08d}"
    tmp = folder / f".tmp-step-{state.step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    save_file(weights, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}, tmp / "training.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(folder.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Optional[Path]:
    found = sorted(Path(folder).glob("step-*"))
    return found[-1] if found else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> TrainState:
    weights = load_file(str(path / "trainable.safetensors"))
    missing = set(model.trainable_state_dict()) - set(weights)
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}")
    model.load_state_dict(weights, strict=False)
    blob = torch.load(path / "training.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    return TrainState(**json.loads((path / "state.json").read_text()))
