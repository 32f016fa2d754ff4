"""The adapter interface: option schema, ``apply`` (what trains), ``save`` / ``load`` / ``merge``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import from_dict
from ..registry import ADAPTERS


@dataclass
class NoOptions:
    pass


class AdapterMethod:
    """One way to adapt a pretrained backbone.  Subclasses set ``name`` and ``Options``.

    ``apply`` prepares the target (a ``Backbone``: ``target.model`` is the pretrained network, which
    the method may wrap or replace) and returns the parameters this adapter trains; the stack then
    trains exactly the union of what its adapters returned (plus every head and trainable module)."""

    name = ""
    Options: type = NoOptions
    trains_base_weights = False  # True: pretrained weights change, so the backbone is saved in full
    saves = "its weights"  # what ``adapters/<name>/`` holds (the run's model card says it)
    switchable = False  # True: ``activate`` can turn named adapters of a target on and off (task-specific adapters)

    def parse_options(self, raw: Any, path: str = "adapter.options") -> Any:
        return raw if isinstance(raw, self.Options) else from_dict(self.Options, raw or {}, path)

    def apply(self, target, options, adapter_name: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def save(self, target, folder: Path, options, adapter_name: str) -> None:
        """Write what this adapter trained into ``folder``."""

    def load(self, target, folder: Path, options, adapter_name: str) -> None:
        """Restore what ``save`` wrote, on a target this adapter was just applied to."""

    def activate(self, target, adapter_names: list[str]) -> None:
        """Make exactly ``adapter_names`` (this method's adapters on ``target``) active; ``switchable`` methods only."""
        raise NotImplementedError

    def merge(self, target, options, adapter_name: str) -> bool:
        """Fold the adapter into the target's base weights; False when it has nothing to fold."""
        return False


def register_adapter(cls: type) -> type:
    ADAPTERS.add(cls.name, cls())
    return cls
