"""mmsft: multimodal supervised fine-tuning and domain adaptation (``mmsft --help``; README.md).

The Python API (``mmsft.api``; README "Python API") is reached through lazy attributes, so ``import
mmsft`` stays cheap -- no torch, transformers or datasets until a function needs them:

    import mmsft
    run = mmsft.train("finance_sentiment", adapter="lora", overrides={"train.epochs": 1})
    mmsft.load(run.path).predict(["Profit rose 5%."])
    mmsft.tasks.register({"name": "my_task", "kind": "text_classification", ...})
"""
from __future__ import annotations

import importlib

_API = ("Run", "load", "train")

__all__ = [*_API, "tasks"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name == "tasks":
        return importlib.import_module(".tasks", __name__)
    raise AttributeError(f"module 'mmsft' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
