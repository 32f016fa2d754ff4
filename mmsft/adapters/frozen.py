"""Frozen backbone: nothing of it trains, or only the top k blocks, its norms or named modules.

Only the tensors that trained are saved (``trained.safetensors``: the trained weights and the buffers
of their layers, e.g. batch-norm statistics of an unfrozen stage); the rest is the pretrained base.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .base import AdapterMethod, register_adapter


@dataclass
class FrozenOptions:
    train_top_layers: int = 0  # unfreeze the last k blocks of the backbone's layer stack
    train_modules: list[str] = field(default_factory=list)  # glob patterns on backbone module names
    train_norms: bool = False  # unfreeze LayerNorm/BatchNorm affine parameters

    def validate(self, path: str) -> None:
        if self.train_top_layers < 0:
            raise UserError(f"train_top_layers must be >= 0, got {self.train_top_layers}", where=f"{path}.train_top_layers")


@register_adapter
class Frozen(AdapterMethod):
    name = "frozen"
    saves = "only the backbone tensors that trained (`trained.safetensors`; none when all were frozen)"
    Options = FrozenOptions

    def apply(self, target, options: FrozenOptions, adapter_name: str):
        trained = []
        if options.train_top_layers:
            stack = target.blocks()
            if options.train_top_layers > len(stack):
                raise UserError(f"cannot train the top {options.train_top_layers} layers", where="adapter.options.train_top_layers",
                                expected=f"at most {len(stack)} (the backbone's block count)")
            for block in list(stack)[-options.train_top_layers:]:
                trained += list(block.parameters())
        names = dict(target.model.named_modules())
        for pattern in options.train_modules:
            hits = [n for n in names if n and fnmatch.fnmatch(n, pattern)]
            if not hits:
                raise UserError(f"no backbone module matches '{pattern}'", where="adapter.options.train_modules",
                                expected="a glob over names such as " + ", ".join(list(names)[1:4]))
            for name in hits:
                trained += list(names[name].parameters())
        if options.train_norms:
            for module in names.values():
                if "norm" in type(module).__name__.lower():
                    trained += list(module.parameters(recurse=False))
        return trained

    def _trained_names(self, target, options) -> list[str]:
        """State-dict keys this adapter changes: its weights, and the buffers of the layers they belong to."""
        ids = {id(p) for p in self.apply(target, options, "")}
        names = []
        for prefix, module in target.model.named_modules():
            own = [n for n, p in module.named_parameters(recurse=False) if id(p) in ids]
            if own:
                own += [n for n, b in module.named_buffers(recurse=False) if b is not None]
                names += [f"{prefix}.{n}" if prefix else n for n in own]
        saved = set(target.model.state_dict())  # non-persistent buffers are not state
        return [n for n in names if n in saved]

    def save(self, target, folder: Path, options, adapter_name: str) -> None:
        from safetensors.torch import save_file

        names = set(self._trained_names(target, options))
        if names:
            folder.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().contiguous().cpu() for k, v in target.model.state_dict().items() if k in names}
            save_file(state, str(folder / "trained.safetensors"))

    def load(self, target, folder: Path, options, adapter_name: str) -> None:
        from safetensors.torch import load_file

        if not self._trained_names(target, options):
            return
        state = load_file(str(folder / "trained.safetensors"))
        missing = set(self._trained_names(target, options)) - set(state)
        unexpected = set(state) - set(target.model.state_dict())
        if missing or unexpected:
            raise UserError(f"saved frozen-adapter weights do not fit the backbone (missing {sorted(missing)[:3]}, "
                            f"unexpected {sorted(unexpected)[:3]})", where=str(folder))
        target.model.load_state_dict(state, strict=False)
