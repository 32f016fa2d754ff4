"""The backbone interface every family implements (text encoder, causal / seq2seq LM, image trunk).

A ``Backbone`` wraps the pretrained network as ``self.model`` -- the part adapters act on (peft wraps
it, ``full`` trains it, ``frozen`` picks blocks of it) -- and exposes it the same way for every family:
``forward(inputs, request) -> Features``, ``blocks()`` (the main stack of layers, where modules attach
and which ``train_top_layers`` and layer-wise LR decay count), ``width`` (the feature size heads read),
and saving (``save_pretrained`` writes the wrapped model the way its library does, so a fully
fine-tuned backbone is plain Hugging Face / timm weights).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from .features import FeatureRequest, Features


def layer_stack(module: nn.Module) -> Optional[nn.ModuleList]:
    """A network's main stack of blocks: its longest ``nn.ModuleList`` (encoder.layer, layers, stages)."""
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else None


class Backbone(nn.Module):
    """Subclasses set ``family`` and implement ``load``, ``forward`` and ``width``."""

    family = ""
    input_keys: tuple[str, ...] = ()  # batch keys the backbone reads; the rest go to modules and heads

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name  # zoo name, folder or model id it was loaded from
        self.entry = None  # the zoo entry, when it came from the zoo
        self.new_token_ids: list[int] = []  # token rows added by the task (trained under LoRA too)

    @classmethod
    def load(cls, name: str) -> tuple["Backbone", Any]:
        """(pretrained backbone, its processor or None) from a zoo name, local folder or hub id."""
        raise NotImplementedError

    def forward(self, inputs: dict, request: FeatureRequest = FeatureRequest()) -> Features:
        raise NotImplementedError

    @property
    def width(self) -> int:
        raise NotImplementedError

    def blocks(self) -> nn.ModuleList:
        stack = layer_stack(self.model)
        if stack is None:
            raise ValueError(f"backbone '{self.name}' has no stack of blocks")
        return stack

    def block_index(self, index: int) -> int:
        """``index`` as a position in ``blocks()`` (negative counts from the top), checked."""
        n = len(self.blocks())
        if not -n <= index < n:
            from ..errors import UserError

            raise UserError(f"block {index} does not exist: the backbone has {n} blocks", expected=f"-{n} .. {n - 1}")
        return index % n

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)

    def load_pretrained(self, folder: Path) -> None:
        """Replace the wrapped model by the one ``save_pretrained`` wrote into ``folder``."""
        self.model = type(self.model).from_pretrained(folder)


class HFBackbone(Backbone):
    """A Hugging Face transformers model: built by ``loader(name) -> (model, tokenizer, zoo entry)``;
    every block has the model's ``hidden_size``."""

    @staticmethod
    def loader(name: str):
        raise NotImplementedError

    @classmethod
    def load(cls, name: str):
        model, tokenizer, entry = cls.loader(name)
        backbone = cls(model, name)
        backbone.entry = entry
        return backbone, tokenizer

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    def block_width(self, index: int) -> int:
        return self.width
