"""Frozen backbone: train heads only, optionally the top k blocks, norms or named modules."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .base import AdapterMethod, layer_stack, register_adapter


@dataclass
class FrozenOptions:
    train_top_layers: int = 0  # unfreeze the last k blocks of the backbone's layer stack
    train_modules: list[str] = field(default_factory=list)  # glob patterns on backbone module names
    train_norms: bool = False  # unfreeze LayerNorm/BatchNorm affine parameters


@register_adapter
class Frozen(AdapterMethod):
    name = "frozen"
    Options = FrozenOptions

    def backbone_frozen(self, options: FrozenOptions) -> bool:
        return not (options.train_top_layers or options.train_modules or options.train_norms)

    def apply(self, model, options: FrozenOptions, entry=None) -> None:
        model.backbone.requires_grad_(False)
        model.heads.requires_grad_(True)
        if options.train_top_layers:
            stack = layer_stack(model.backbone)
            if stack is None or options.train_top_layers > len(stack):
                raise UserError(
                    f"cannot train the top {options.train_top_layers} layers",
                    where="adapter.options.train_top_layers",
                    expected=f"at most {len(stack) if stack is not None else 0} (the backbone's block count)",
                )
            for block in list(stack)[-options.train_top_layers:]:
                block.requires_grad_(True)
        names = dict(model.backbone.named_modules())
        for pattern in options.train_modules:
            hits = [n for n in names if n and fnmatch.fnmatch(n, pattern)]
            if not hits:
                raise UserError(f"no backbone module matches '{pattern}'", where="adapter.options.train_modules",
                                expected="a glob over names such as " + ", ".join(list(names)[1:4]))
            for name in hits:
                names[name].requires_grad_(True)
        if options.train_norms:
            for name, module in names.items():
                if "norm" in type(module).__name__.lower():
                    module.requires_grad_(True)
        if self.backbone_frozen(options):
            model.keep_eval("backbone")  # deterministic features: no dropout, frozen BN statistics

    def save_backbone(self, model, folder: Path, options) -> bool:
        if self.backbone_frozen(options):
            return False
        return super().save_backbone(model, folder, options)
