"""Load an mmsft detection export with torchvision alone (this file is copied into every export).

Why a script and not a model class: torchvision ships the detectors (FCOS, RetinaNet, SSD, Faster
R-CNN), the feature pyramid and the trunks, but no "from_pretrained"; ``config.json`` names the pieces
and their arguments and ``build`` puts them together, ``model.safetensors`` is the state dict
(``load_state_dict(strict=True)``).  Only torch, torchvision, safetensors and PIL are imported: an
export works where mmsft is not installed.

    from load_torchvision import load, predict
    model, config = load("EXPORT_DIR")
    predict(model, config, ["street.jpg"])   # [{"boxes": [[x0, y0, x1, y1], ...], "scores": [...], "labels": ["Car", ...]}]

    python load_torchvision.py EXPORT_DIR street.jpg ...   # the same, as JSON lines

Preprocessing is mmsft's: the RGB pixels letterboxed to ``image_size`` (aspect kept, long side resized
with antialiasing, centred on a square filled with ``pad_fill``), scaled to [0, 1]; the detector
normalises with ``image_mean`` / ``image_std`` itself and does not resize again (``min_size`` =
``max_size`` = ``image_size``, ``size_divisible`` 1).  Boxes come back in the original image's pixels.
"""
from __future__ import annotations

import json
import sys
from collections import OrderedDict
from functools import partial
from pathlib import Path


def _backbone(config: dict):
    import torchvision
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    trunk = config["trunk"]
    network = torchvision.models.get_model(trunk["torchvision_model"], weights=None)
    body = getattr(network, trunk["module"]) if trunk["module"] else network
    channels = config["channels"]
    extra = LastLevelP6P7(channels, channels) if config["extra_levels"] else None
    return BackboneWithFPN(body, OrderedDict(trunk["return_layers"]), trunk["in_channels"], channels, extra_blocks=extra)


def build(config: dict):
    """The torchvision detector ``config`` describes, with untrained weights."""
    from torch import nn
    from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator

    arch, size, k = config["arch"], config["image_size"], config["num_classes"]
    strides, channels = config["level_strides"], config["channels"]
    common = dict(image_mean=config["image_mean"], image_std=config["image_std"], size_divisible=1)
    backbone = _backbone(config)
    if arch == "fcos":
        from torchvision.models.detection.fcos import FCOS, FCOSHead

        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        return FCOS(backbone, k, min_size=size, max_size=size, anchor_generator=anchors,
                    head=FCOSHead(channels, 1, k, num_convs=config["head_convs"]), score_thresh=config["score_thresh"],
                    nms_thresh=config["nms_thresh"], detections_per_img=config["detections_per_img"], **common)
    if arch == "retinanet":
        from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

        sizes = tuple(tuple(int(4 * s * 2 ** (i / 3)) for i in range(3)) for s in strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
        head = RetinaNetHead(channels, 9, k, norm_layer=partial(nn.GroupNorm, 32))
        for tower in (head.classification_head, head.regression_head):
            tower.conv = tower.conv[: config["head_convs"]]
        return RetinaNet(backbone, k, min_size=size, max_size=size, anchor_generator=anchors, head=head,
                         score_thresh=config["score_thresh"], nms_thresh=config["nms_thresh"],
                         detections_per_img=config["detections_per_img"], **common)
    if arch == "ssdlite":
        from torchvision.models.detection.ssd import SSD
        from torchvision.models.detection.ssdlite import SSDLiteHead

        anchors = DefaultBoxGenerator([[2, 3]] * len(strides), min_ratio=0.1, max_ratio=0.95)
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        head = SSDLiteHead([channels] * len(strides), anchors.num_anchors_per_location(), k + 1, norm)
        return SSD(backbone, anchors, (size, size), k + 1, head=head, score_thresh=config["score_thresh"],
                   nms_thresh=config["nms_thresh"], detections_per_img=config["detections_per_img"], **common)
    if arch == "fasterrcnn":
        from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
        from torchvision.ops import MultiScaleRoIAlign

        names = list(dict(config["trunk"]["return_layers"]).values())
        width = 4 * channels
        return FasterRCNN(backbone, None, min_size=size, max_size=size,
                          rpn_anchor_generator=AnchorGenerator(tuple((4 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides)),
                          box_roi_pool=MultiScaleRoIAlign(names, 7, 2), box_head=TwoMLPHead(channels * 49, width),
                          box_predictor=FastRCNNPredictor(width, k + 1), rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
                          box_score_thresh=config["score_thresh"], box_nms_thresh=config["nms_thresh"],
                          box_detections_per_img=config["detections_per_img"], **common)
    raise ValueError(f"unknown detector '{arch}'")


def load(folder):
    """(detector in eval mode with the exported weights, config)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = build(config)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model.eval(), config


def letterbox_params(width: int, height: int, size: int):
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def preprocess(path, config: dict):
    """(float image (3, S, S) in [0, 1], (width, height) of the original)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    with Image.open(path) as im:
        pixels = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
    height, width = pixels.shape[-2:]
    size = config["image_size"]
    if config["resize"] == "letterbox":
        new_w, new_h, left, top = letterbox_params(width, height, size)
        out = F.resize(pixels, [new_h, new_w], antialias=True)
        out = F.pad(out, [left, top, size - new_w - left, size - new_h - top], fill=config["pad_fill"])
    else:
        out = F.resize(pixels, [size, size], antialias=True)
    return out.float() / 255.0, (int(width), int(height))


def restore(boxes, width: int, height: int, config: dict):
    """Boxes on the ``image_size`` square -> pixels of the original image."""
    boxes = boxes.reshape(-1, 4).float().clone()
    size = config["image_size"]
    if config["resize"] == "letterbox":
        new_w, new_h, left, top = letterbox_params(width, height, size)
        boxes[:, 0::2] = ((boxes[:, 0::2] - left) * (width / new_w)).clamp(0, width)
        boxes[:, 1::2] = ((boxes[:, 1::2] - top) * (height / new_h)).clamp(0, height)
    else:
        boxes[:, 0::2] = (boxes[:, 0::2] * width / size).clamp(0, width)
        boxes[:, 1::2] = (boxes[:, 1::2] * height / size).clamp(0, height)
    return boxes


def detect(model, config: dict, paths) -> list[dict]:
    """Raw detections (every box above ``score_thresh``) per image: tensors, original pixels, label ids."""
    import torch

    out = []
    with torch.no_grad():
        for path in paths:
            image, (width, height) = preprocess(path, config)
            det = model([image])[0]
            labels = det["labels"] - config["label_offset"]
            out.append({"boxes": restore(det["boxes"], width, height, config), "scores": det["scores"], "labels": labels})
    return out


def predict(model, config: dict, paths, score_thresh=None) -> list[dict]:
    """What ``mmsft predict`` prints: boxes with score >= ``predict_score_thresh`` (or ``score_thresh``)."""
    thresh = config["predict_score_thresh"] if score_thresh is None else score_thresh
    rows = []
    for path, det in zip(paths, detect(model, config, paths)):
        keep = det["scores"] >= thresh
        rows.append({"input": str(path), "boxes": [
            {"label": config["class_names"][int(l)], "score": round(float(s), 4), "box_xyxy": [round(float(v), 1) for v in b]}
            for b, s, l in zip(det["boxes"][keep], det["scores"][keep], det["labels"][keep])]})
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python load_torchvision.py EXPORT_DIR IMAGE ...")
    _model, _config = load(sys.argv[1])
    for _row in predict(_model, _config, sys.argv[2:]):
        print(json.dumps(_row))
