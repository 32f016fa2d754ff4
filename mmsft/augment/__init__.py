"""Data augmentation: a registry of methods, each declaring the task kinds it fits.

Used two ways: an ``augment:`` list in a task's ``data`` block (new rows are added to the training
split after splitting, when the task's data is loaded for training), or ``mmsft data augment`` which
materialises an augmented copy of the dataset with its own task YAML.  Every module in this package
registers its methods on import: adding a method (or a kind's own methods) is adding a file.
"""
import importlib
import pkgutil

from .base import METHODS, AugmentEntry, AugmentMethod, augment_rows, methods_for, parse_entries, parse_entry, register_method  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "materialise"):
        importlib.import_module(f"{__name__}.{_module.name}")
