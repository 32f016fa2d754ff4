"""Shared adapter interface: option schema, ``apply``, and saving/loading of the backbone part."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import from_dict
from ..registry import Registry


@dataclass
class NoOptions:
    pass


class AdapterMethod:
    """One way to adapt a pretrained backbone.  Subclasses set ``name`` and ``Options``."""

    name = ""
    Options: type = NoOptions

    def parse_options(self, raw: Any) -> Any:
        return from_dict(self.Options, raw or {}, "adapter.options") if not isinstance(raw, self.Options) else raw

    def apply(self, model, options, entry=None) -> None:
        """Wrap/freeze ``model.backbone`` in place; heads always train."""
        raise NotImplementedError

    def backbone_frozen(self, options) -> bool:
        """True when no backbone weight trains (features can then be computed once)."""
        return False

    def save_backbone(self, model, folder: Path, options) -> bool:
        """Save the backbone the Hugging Face way; False when it is unchanged from the base."""
        model.backbone.save_pretrained(folder, safe_serialization=True)
        return True

    def load_backbone(self, base: nn.Module, folder: Path, options) -> nn.Module:
        """Rebuild the trained backbone from ``base`` and what ``save_backbone`` wrote."""
        return type(base).from_pretrained(folder) if hasattr(type(base), "from_pretrained") else base


ADAPTERS: Registry[AdapterMethod] = Registry("adapter method")


def register_adapter(cls: type) -> type:
    ADAPTERS.add(cls.name, cls())
    return cls


def layer_stack(module: nn.Module) -> nn.ModuleList | None:
    """The backbone's main stack of blocks: its longest ``nn.ModuleList`` (encoder.layer, layers...)."""
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else None
