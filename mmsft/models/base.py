"""Base class of every task model: named ``backbone`` and ``heads``, frozen parts stay in eval mode."""
from __future__ import annotations

import torch
from torch import nn


class TaskModel(nn.Module):
    """A task model owns ``backbone`` (shared, adapter-wrapped) and ``heads`` (an nn.ModuleDict).

    ``forward`` returns a dict with ``loss`` when labels are given (timm/torchtune style).
    Modules listed by ``keep_eval`` stay in eval mode during training (frozen backbones: no
    dropout noise, frozen batch-norm statistics), which also makes cached features exact.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self._keep_eval: list[str] = []

    def keep_eval(self, *names: str) -> None:
        self._keep_eval = list(dict.fromkeys([*self._keep_eval, *names]))

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self._keep_eval:
            self.get_submodule(name).eval()
        return self

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable_params": trainable, "total_params": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}
