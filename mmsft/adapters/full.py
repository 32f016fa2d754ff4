"""Full fine-tuning: every weight of the target trains; saved as the library's own plain weights."""
from __future__ import annotations

from pathlib import Path

from .base import AdapterMethod, register_adapter


@register_adapter
class FullFineTuning(AdapterMethod):
    name = "full"
    saves = "all backbone weights as a plain model folder"
    trains_base_weights = True

    def apply(self, target, options, adapter_name: str):
        return list(target.model.parameters())

    def save(self, target, folder: Path, options, adapter_name: str) -> None:
        target.save_pretrained(folder)

    def load(self, target, folder: Path, options, adapter_name: str) -> None:
        target.load_pretrained(folder)
