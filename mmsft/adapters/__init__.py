"""Adapter methods (peft's layout: one module per method, registered with one call) and their stack.

An adapter decides which weights of its target (``model.backbone`` by default) train, and saves,
loads and merges what it trained on its own; a run may stack several (``adapter: [frozen_top2,
lora]``), applied in order.  Presets live as YAML in the top-level ``adapters/`` folder.  Every
module of this package registers its method on import: adding a method is adding a file.
"""
import importlib
import pkgutil

from .base import AdapterMethod, register_adapter  # noqa: F401
from .stack import apply_adapters, load_adapters, merge_adapters, save_adapters  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "stack"):
        importlib.import_module(f"{__name__}.{_module.name}")
