"""The ``compressed`` adapter method: a backbone whose structure changed after training.

Its options are the structure (blocks kept, heads kept per block, int8 mode and backend, sparsity),
written into the run's config.yaml; ``apply`` replays that structure on a freshly loaded base
backbone and ``load`` restores the weights: plain tensors, plus int8 weights, scales and activation
scales per quantized layer, from which the recorded backend rebuilds its own modules (no
re-quantization, so a reloaded run predicts exactly what was measured).  Weights shared by two
names (an LM's tied embedding and output matrix) are stored once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..adapters.base import AdapterMethod, register_adapter
from ..errors import UserError
from .structure import keep_blocks, prune_heads

FILE = "compressed.safetensors"
QKEY = "int8"  # quantized layer L is stored as L.int8.weight_int8, L.int8.weight_scale, ...


@dataclass
class CompressedOptions:
    blocks: Optional[int] = None  # blocks kept: the first n of the stack (None: all)
    heads: dict[str, list[int]] = field(default_factory=dict)  # block index -> attention heads kept (blocks that lost heads)
    quantize: Optional[Literal["int8_dynamic", "int8_static"]] = None  # int8 linear layers inside the blocks
    backend: Optional[Literal["torchao", "torch.ao"]] = None  # which library's int8 modules (required with quantize)
    sparsity: float = 0.0  # share of the blocks' linear weights that are zero (magnitude pruning; stored dense)

    def validate(self, path: str) -> None:
        if self.quantize and not self.backend:
            raise UserError("a quantized backbone names its backend", where=f"{path}.backend", expected="torchao or torch.ao")
        if not 0 <= self.sparsity < 1:
            raise UserError(f"sparsity must be in [0, 1), got {self.sparsity}", where=f"{path}.sparsity")
        if self.blocks is not None and self.blocks < 1:
            raise UserError(f"blocks must be >= 1, got {self.blocks}", where=f"{path}.blocks")


@register_adapter
class Compressed(AdapterMethod):
    name = "compressed"
    Options = CompressedOptions
    saves = f"the pruned / quantized backbone (`{FILE}`: plain tensors, int8 weights with their scales); its structure is in config.yaml"
    trains_base_weights = True

    def apply(self, target, options: CompressedOptions, adapter_name: str):
        if options.blocks is not None:
            keep_blocks(target, options.blocks)
        if options.heads:
            prune_heads(target, {int(k): v for k, v in options.heads.items()})
        return [] if options.quantize else list(target.model.parameters())

    def save(self, target, folder: Path, options: CompressedOptions, adapter_name: str) -> None:
        from ..atomic import save_safetensors
        from .quantize import backend, quantized_modules

        quantized = quantized_modules(target, options.backend) if options.quantize else {}
        tensors, aliases, seen = {}, {}, {}
        for name, module in quantized.items():
            for key, value in backend(options.backend).export(module).items():
                tensors[f"{name}.{QKEY}.{key}"] = value.detach().cpu().contiguous()
        for key, value in target.model.state_dict().items():
            if any(key.startswith(q + ".") for q in quantized):
                continue
            ptr = (value.data_ptr(), value.shape)
            if ptr in seen:
                aliases[key] = seen[ptr]
                continue
            seen[ptr] = key
            tensors[key] = value.detach().cpu().contiguous()
        folder.mkdir(parents=True, exist_ok=True)
        save_safetensors(folder / FILE, tensors, metadata={"aliases": json.dumps(aliases)})

    def load(self, target, folder: Path, options: CompressedOptions, adapter_name: str) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        from .quantize import restore_blocks

        path = folder / FILE
        if not path.is_file():
            raise UserError("the compressed backbone's weights are missing", where=str(path))
        state = load_file(str(path))
        with safe_open(str(path), "pt") as fh:
            aliases = json.loads((fh.metadata() or {}).get("aliases", "{}"))
        groups: dict[str, dict] = {}
        plain = {}
        for key, value in state.items():
            module, sep, rest = key.partition(f".{QKEY}.")
            if sep:
                groups.setdefault(module, {})[rest] = value
            else:
                plain[key] = value
        for alias, original in aliases.items():
            plain[alias] = plain[original]
        result = target.model.load_state_dict(plain, strict=False)
        missing = [k for k in result.missing_keys if not any(k.startswith(g + ".") for g in groups)]
        if missing or result.unexpected_keys:
            raise UserError(f"saved compressed weights do not fit the recorded structure (missing {missing[:3]}, "
                            f"unexpected {list(result.unexpected_keys)[:3]})", where=str(path))
        if groups:
            restore_blocks(target, options.backend, options.quantize, groups)
