"""``train.gradient_checkpointing``: keep only each transformer block's input through the forward and
recompute the block in backward.  A causal LM's activations (dozens of tensors of batch x length x
hidden per block, the attention probabilities) are most of its training memory; checkpointing
trades them for about one extra forward per step.  It uses the transformers models' own switch
(non-reentrant ``torch.utils.checkpoint``), so LoRA and frozen layers need no special input hook."""
from __future__ import annotations

from torch import nn

from ..errors import UserError


def enable_gradient_checkpointing(model: nn.Module) -> list[str]:
    """Switch it on for every outermost transformers model inside ``model``; returns their module names.
    A model with none that supports it (e.g. a torchvision detector) is refused rather than run unchanged."""
    from transformers import PreTrainedModel

    chosen: list[str] = []
    for name, module in model.named_modules():
        inside = any(c == "" or name.startswith(f"{c}.") for c in chosen)  # its outer transformers model switched it
        if inside or not isinstance(module, PreTrainedModel) or not module.supports_gradient_checkpointing:
            continue
        if hasattr(module, "activation_checkpointing_enable"):  # transformers 5's name for it
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        chosen.append(name)
    if not chosen:
        raise UserError("train.gradient_checkpointing: this model has no transformer backbone that supports it",
                        where="train.gradient_checkpointing", expected="false for this model (a transformers text backbone supports it)")
    return chosen
