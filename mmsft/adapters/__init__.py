"""Adapter methods (peft's layout: one module per method, registered with one call).

An adapter decides which parameters train and how the backbone is saved; presets live as YAML in
the top-level ``adapters/`` folder and pick a method plus its options.
"""
from .base import ADAPTERS, AdapterMethod  # noqa: F401
from . import full, frozen, lora  # noqa: F401  (each registers itself)
