"""LoRA / DoRA through peft on the target's linear (and, for image backbones, pointwise conv) layers.

Several LoRA adapters may stack on one target (peft's named adapters, all active); each saves as a
peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) that
``PeftModel.from_pretrained`` also reads, and ``merge`` folds them into the base weights
(``merge_and_unload``), after which the backbone saves as plain weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from .base import AdapterMethod, register_adapter
from .lora_fused import fuse_lora_updates

# Fallback targets by Hugging Face model_type when the zoo entry does not name them.
DEFAULT_TARGETS = {
    "bert": ["query", "key", "value", "dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Union[str, list[str]] = "auto"  # auto: per architecture; or names; or "all-linear"
    use_dora: bool = False
    bias: str = "none"
    trainable_token_indices: Optional[list[int]] = None  # embedding rows trained in full (new special tokens)
    extra_trainable: list[str] = field(default_factory=list)  # backbone modules trained in full (peft modules_to_save)

    def validate(self, path: str) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise UserError(f"r must be >= 1 and alpha > 0, got r={self.r}, alpha={self.alpha}", where=path)
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}", where=f"{path}.dropout")


def resolve_targets(target, options: LoraOptions):
    if options.target_modules != "auto":
        return options.target_modules
    entry = getattr(target, "entry", None)
    if entry is not None and entry.lora_targets:
        return entry.lora_targets
    if hasattr(target, "lora_targets_auto"):  # e.g. mmsft.vision.trunk.ImageBackbone: its pointwise convs
        return target.lora_targets_auto()
    model_type = getattr(getattr(target.model, "config", None), "model_type", None)
    return DEFAULT_TARGETS.get(model_type, "all-linear")


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


@register_adapter
class Lora(AdapterMethod):
    name = "lora"
    saves = "a peft LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`; `PeftModel.from_pretrained` reads it)"
    Options = LoraOptions
    switchable = True

    def activate(self, target, adapter_names: list[str]) -> None:
        # peft's set_adapter also turns requires_grad off for inactive adapters; what trains is the stack's
        # business (checkpoints and the optimizer read requires_grad), so it is restored: an inactive
        # adapter simply gets no gradient that step (AdamW skips a parameter without one)
        flags = [(p, p.requires_grad) for p in target.model.parameters()]
        target.model.base_model.set_adapter(list(adapter_names))
        for param, flag in flags:
            param.requires_grad_(flag)

    def _config(self, target, options: LoraOptions):
        from peft import LoraConfig

        kwargs = {}
        # rows a task added to the vocabulary (role tokens) train under LoRA too
        indices = sorted({*(options.trainable_token_indices or []), *getattr(target, "new_token_ids", ())})
        if indices:
            kwargs["trainable_token_indices"] = indices
        return LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                          target_modules=resolve_targets(target, options), use_dora=options.use_dora,
                          bias=options.bias, modules_to_save=options.extra_trainable or None, **kwargs)

    def apply(self, target, options: LoraOptions, adapter_name: str):
        from peft import get_peft_model

        before = {id(p) for p in target.model.parameters()}
        try:
            if _is_peft(target.model):
                target.model.add_adapter(adapter_name, self._config(target, options))
                active = [n for n, c in target.model.peft_config.items() if type(c).__name__ == "LoraConfig"]
                target.model.base_model.set_adapter(active)
            else:
                target.model = get_peft_model(target.model, self._config(target, options), adapter_name=adapter_name)
        except ValueError as exc:  # peft: target modules not found
            raise UserError(str(exc).split("\n")[0], where="adapter.options.target_modules") from None
        fuse_lora_updates(target.model)  # keeps x and a bool mask, not three copies, per layer (lora_fused.py)
        return [p for p in target.model.parameters() if id(p) not in before]

    def save(self, target, folder: Path, options, adapter_name: str) -> None:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        config = target.model.peft_config[adapter_name]
        # trained token rows are in the adapter, so a resized embedding is not saved whole (the kind
        # rebuilds the resized base before loading)
        embeddings = False if getattr(config, "trainable_token_indices", None) else "auto"
        state = get_peft_model_state_dict(target.model, adapter_name=adapter_name, save_embedding_layers=embeddings)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(folder / "adapter_model.safetensors"))
        config.save_pretrained(str(folder))

    def load(self, target, folder: Path, options, adapter_name: str) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        result = set_peft_model_state_dict(target.model, load_file(str(folder / "adapter_model.safetensors")), adapter_name=adapter_name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if adapter_name in k or "lora_" in k]
        if unexpected:
            raise UserError(f"saved LoRA weights do not fit the backbone: {unexpected[:3]}", where=str(folder))

    def merge(self, target, options, adapter_name: str) -> bool:
        if not _is_peft(target.model):
            return False  # an earlier LoRA of the stack already merged every adapter
        target.model = target.model.merge_and_unload()
        return True
