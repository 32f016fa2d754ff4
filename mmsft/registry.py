"""Name -> object registries (timm's ``@register_model``) and the root registries every plug-in fills.

A registry may name ``locations``: modules imported on its first lookup (mmengine's lazy locations).
The root registries below live in this bottom layer and know their plug-in packages only by module
name, so a low package (dataqc, augment, training) can look a task kind or a head up without
importing the package that defines it -- and plug-ins never import in circles.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from .errors import UserError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names fail with the list of known ones and a suggestion."""

    def __init__(self, kind: str, locations: Sequence[str] = ()):
        self.kind = kind
        self.locations = tuple(locations)
        self._items: dict[str, T] = {}
        self._loaded = not self.locations

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # before importing: the imported modules register into this registry
            for module in self.locations:
                importlib.import_module(module)

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        self._load()
        if not isinstance(name, str) or name not in self._items:  # a YAML list or mapping where a name belongs
            raise UserError(
                f"unknown {self.kind} '{name}'.{suggest(str(name), self._items)}",
                expected="one of: " + ", ".join(sorted(self._items)),
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self):
        self._load()
        return sorted(self._items.items())


# -- root registries: filled by the packages named in ``locations`` ---------------------------------
KINDS: Registry = Registry("task kind", ["mmsft.kinds"])
ADAPTERS: Registry = Registry("adapter method", ["mmsft.adapters", "mmsft.compress.adapter"])
BACKBONE_FAMILIES: Registry = Registry("backbone family", ["mmsft.models.text", "mmsft.generation.backbone", "mmsft.vision.trunk"])
HEADS: Registry = Registry("head", ["mmsft.models.heads", "mmsft.models.matching", "mmsft.generation.head", "mmsft.vision.heads"])
POOLERS: Registry = Registry("pooling", ["mmsft.models.pooling"])
MODULES: Registry = Registry("model module", ["mmsft.models.modules", "mmsft.distill.projection"])
OBJECTIVES: Registry = Registry("objective", ["mmsft.training.objectives", "mmsft.training.multitask", "mmsft.adaptation.dann", "mmsft.distill.objective"])
CALLBACKS: Registry = Registry("callback", ["mmsft.training.callbacks", "mmsft.training.trackers"])
LOSSES: Registry = Registry("loss", ["mmsft.training.losses"])
SCHEDULES: Registry = Registry("LR schedule", ["mmsft.training.schedules"])
