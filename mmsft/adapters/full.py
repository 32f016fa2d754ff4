"""Full fine-tuning: every backbone weight trains."""
from __future__ import annotations

from .base import AdapterMethod, register_adapter


@register_adapter
class FullFineTuning(AdapterMethod):
    name = "full"

    def apply(self, model, options, entry=None) -> None:
        model.requires_grad_(True)
