"""LoRA / DoRA through peft on the backbone's linear (and, for vision, conv) layers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from .base import AdapterMethod, register_adapter

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


def resolve_targets(backbone, options: LoraOptions, entry=None):
    if options.target_modules != "auto":
        return options.target_modules
    if entry is not None and entry.lora_targets:
        return entry.lora_targets
    if hasattr(backbone, "lora_targets_auto"):  # e.g. mmsft.vision.trunk.ImageBackbone: its pointwise convs
        return backbone.lora_targets_auto()
    model_type = getattr(getattr(backbone, "config", None), "model_type", None)
    return DEFAULT_TARGETS.get(model_type, "all-linear")


@register_adapter
class Lora(AdapterMethod):
    name = "lora"
    Options = LoraOptions

    def _config(self, backbone, options: LoraOptions, entry=None, token_ids=()):
        from peft import LoraConfig

        kwargs = {}
        indices = sorted({*(options.trainable_token_indices or []), *token_ids})
        if indices:
            kwargs["trainable_token_indices"] = indices
        return LoraConfig(
            r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
            target_modules=resolve_targets(backbone, options, entry), use_dora=options.use_dora,
            bias=options.bias, modules_to_save=options.extra_trainable or None, **kwargs,
        )

    def apply(self, model, options: LoraOptions, entry=None) -> None:
        from peft import get_peft_model

        try:
            # a kind that added tokens (new embedding rows) lists them in ``model.trainable_token_ids``
            token_ids = getattr(model, "trainable_token_ids", ())
            model.backbone = get_peft_model(model.backbone, self._config(model.backbone, options, entry, token_ids))
        except ValueError as exc:  # peft: target modules not found
            raise UserError(str(exc).split("\n")[0], where="adapter.options.target_modules") from None
        model.heads.requires_grad_(True)

    def save_backbone(self, model, folder: Path, options) -> bool:
        # adapter weights + adapter_config.json only; trained token rows are in the adapter, so a resized
        # embedding is not saved whole (the kind rebuilds the resized base before loading)
        tokens = bool(getattr(model.backbone.peft_config.get("default"), "trainable_token_indices", None))
        model.backbone.save_pretrained(folder, save_embedding_layers=False if tokens else "auto")
        return True

    def load_backbone(self, base, folder: Path, options):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, folder)
