"""Any image classifier by name: zoo entries, timm names, torchvision names -- offline-safe.

``timm_or_torchvision(name, pretrained=True)`` never hangs offline: weights come from the local caches
(the zoo's converted packages, the Hugging Face cache, the torch hub cache); a download is tried only
when the host answers a 3 s connect, otherwise ``UserError`` is raised at once.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Union

from ..errors import UserError, suggest
from ..zoo.base import ZOO, hub_reachable

def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_error(name: str, source: str) -> UserError:
    return UserError(
        f"pretrained weights for {source} model '{name}' are not in the local cache and the download host "
        "cannot be reached (offline)",
        expected="pretrained=False, a zoo entry (" + ", ".join(_image_entries()) + "), or the weights in the local cache",
    )


def _image_entries() -> list[str]:
    return [n for n, e in ZOO.items() if e.family == "image"]


def _timm_local_file(model_name: str) -> str | None:
    import timm
    import torch

    cfg = timm.models.get_pretrained_cfg(model_name) if hasattr(timm.models, "get_pretrained_cfg") else None
    if cfg is None:
        return None
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    if cfg.get("file") and Path(cfg["file"]).is_file():
        return cfg["file"]
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin", cfg.get("hf_hub_filename") or ""):
            hit = try_to_load_from_cache(cfg["hf_hub_id"], fname) if fname else None
            if isinstance(hit, str):
                return hit
    if cfg.get("url"):
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
    return None


def _build_timm(name: str, pretrained: Union[bool, str], **kwargs):
    import timm

    base, tag = timm.models.split_model_name_tag(name)
    if not pretrained:
        return timm.create_model(base, pretrained=False, **kwargs)
    local = _timm_local_file(name)
    if local:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": local}, **kwargs)
    if pretrained == "if_available":
        return timm.create_model(base, pretrained=False, **kwargs)
    if not timm.models.is_model_pretrained(base):
        raise UserError(f"timm model '{name}' has no pretrained weights", expected="pretrained=False")
    if not hub_reachable():
        raise _offline_error(name, "timm")
    return timm.create_model(name, pretrained=True, **kwargs)


def _build_torchvision(name: str, pretrained: Union[bool, str], **kwargs):
    import torch
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    if name == "mobilenet_v2" and not kwargs:  # the zoo package ships torchvision's IMAGENET1K_V1 file
        return ZOO.get("mobilenet-v2").builder(pretrained=True)
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        weights = None
    if weights is None:
        if pretrained == "if_available":
            return torchvision.models.get_model(name, weights=None, **kwargs)
        raise UserError(f"torchvision model '{name}' has no pretrained weights", expected="pretrained=False")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        if pretrained == "if_available":
            return torchvision.models.get_model(name, weights=None, **kwargs)
        if not _reachable(weights.url.split("://")[-1].split("/")[0]):
            raise _offline_error(name, "torchvision")
    return torchvision.models.get_model(name, weights=weights, **kwargs)


def timm_or_torchvision(name: str, *, pretrained: Union[bool, str] = True, **kwargs: Any):
    """Build an image model by name: a zoo entry, ``timm:<name>``, ``torchvision:<name>``, or a bare name
    (timm is tried first, then torchvision).

    ``pretrained=True`` loads ImageNet weights from the local cache (zoo package, HF cache, torch hub
    cache) and downloads only when the host answers; offline it raises ``UserError`` at once instead of
    hanging.  ``pretrained="if_available"`` falls back to random init when no local weights exist;
    ``pretrained=False`` always builds random init.  ``kwargs`` go to the model constructor.
    """
    import timm
    import torchvision

    if name in ZOO and ZOO.get(name).family == "image":
        if kwargs:
            raise UserError(f"zoo entry '{name}' takes no constructor arguments", where=name)
        return ZOO.get(name).builder(pretrained=bool(pretrained))
    source, _, bare = name.partition(":") if name.startswith(("timm:", "torchvision:")) else ("", "", name)
    tv_names = set(torchvision.models.list_models())
    if source in ("", "timm") and timm.is_model(bare):
        return _build_timm(bare, pretrained, **kwargs)
    if source in ("", "torchvision") and bare in tv_names:
        return _build_torchvision(bare, pretrained, **kwargs)
    choices = _image_entries() + sorted(tv_names) + list(timm.list_models())
    raise UserError(
        f"unknown image model '{name}'.{suggest(bare, choices)}",
        expected="a zoo entry (" + ", ".join(_image_entries()) + "), a timm model name or a torchvision model name",
    )


def image_features(model, x):
    """Last feature map (B, C, H/32, W/32) of a zoo/timm/torchvision classifier built here."""
    if hasattr(model, "forward_features"):
        return model.forward_features(x)
    if hasattr(model, "features"):
        return model.features(x)
    raise UserError(f"cannot take a feature map from {type(model).__name__}", expected="a timm model or a torchvision model with .features")
