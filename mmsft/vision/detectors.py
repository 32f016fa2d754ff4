"""Detector families over a zoo image backbone: the ``DETECTORS`` registry of torchvision detectors.

Each ``Arch`` builds a torchvision FCOS / RetinaNet / SSD / Faster R-CNN whose own ``backbone`` is an
empty placeholder (mmsft's backbone and neck produce the features; torchvision's head, anchors,
losses and post-processing do the rest, unmodified) and runs it on ready-made feature maps.  The
detection head (``mmsft.vision.heads``) puts neck and detector together; ``DetectorOptions`` is its
options block.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from ..errors import UserError
from ..registry import Registry
from .necks import NECKS

DETECTORS: Registry = Registry("detector")


@dataclass
class DetectorOptions:
    """Options of a detection head (``model.heads.detection.options``).

    ``batch_norm: frozen`` (default) keeps every backbone BatchNorm in eval mode, so its ImageNet
    running statistics are used and never updated -- with 8-16 images per batch, batch statistics
    are noisy and updating them hurts (torchvision's detection models freeze them for the same
    reason).  The affine BN weights still train under ``full``; ``train`` updates the statistics."""

    strides: list[int] = field(default_factory=lambda: [16, 32])  # backbone maps fed to the neck (add 8 for tiny objects)
    neck: str = "fpn"  # see mmsft.vision.necks.NECKS
    channels: int = 128  # neck / head width (a multiple of 16 and 32 for the GroupNorm heads)
    extra_levels: int = 2  # stride-2 levels added after the last map (P6, P7)
    head_convs: int = 2  # conv layers per head tower (torchvision's default is 4)
    batch_norm: Literal["frozen", "train"] = "frozen"
    score_thresh: float = 0.05  # low on purpose: mAP needs the whole precision-recall curve
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    predict_score_thresh: float = 0.3  # boxes shown by ``mmsft predict`` and the report's image grid

    def validate(self, path: str) -> None:
        if self.channels % 32:
            raise UserError(f"channels={self.channels} is not a multiple of 32", where=f"{path}.channels",
                            expected="64, 96, 128, 256 ... (GroupNorm groups)")
        if not self.strides or sorted(self.strides) != self.strides:
            raise UserError("strides must be an increasing list", where=f"{path}.strides", expected="e.g. [8, 16, 32]")
        NECKS.get(self.neck)


class _FeaturesIn(nn.Module):
    """Stands in for a torchvision detector's backbone (mmsft's backbone + neck run before it)."""

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels


class Arch:
    """One detector family: builds the torchvision module and runs it on ready-made features."""

    label_offset = 0  # 1 where the detector reserves label 0 for background (softmax heads)

    def build(self, channels: int, level_strides: list[int], num_classes: int, opts: DetectorOptions) -> nn.Module:
        raise NotImplementedError

    def losses(self, det, images: ImageList, features: dict, targets: list[dict]) -> dict:
        raise NotImplementedError

    def detect(self, det, images: ImageList, features: dict) -> list[dict]:
        raise NotImplementedError


class _DenseOneStage(Arch):
    """FCOS and RetinaNet: dense per-location heads, torchvision's forward minus transform/backbone."""

    def _split(self, det, images, feats, head_outputs, anchors):
        hw = [x.size(2) * x.size(3) for x in feats]
        per_location = head_outputs["cls_logits"].size(1) // sum(hw)
        counts = [n * per_location for n in hw]
        split = {k: list(v.split(counts, dim=1)) for k, v in head_outputs.items()}
        return det.postprocess_detections(split, [list(a.split(counts)) for a in anchors], images.image_sizes)

    def detect(self, det, images, features):
        feats = list(features.values())
        head_outputs = det.head(feats)
        return self._split(det, images, feats, head_outputs, det.anchor_generator(images, feats))


@DETECTORS.register("fcos")
class Fcos(_DenseOneStage):
    """FCOS (anchor-free, centre-ness); GroupNorm heads, so batch size does not matter."""

    def build(self, channels, level_strides, num_classes, opts):
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOS, FCOSHead

        anchors = AnchorGenerator(tuple((s,) for s in level_strides), ((1.0,),) * len(level_strides))
        head = FCOSHead(channels, 1, num_classes, num_convs=opts.head_convs)
        return FCOS(_FeaturesIn(channels), num_classes, anchor_generator=anchors, head=head,
                    score_thresh=opts.score_thresh, nms_thresh=opts.nms_thresh, detections_per_img=opts.detections_per_img)

    def losses(self, det, images, features, targets):
        feats = list(features.values())
        head_outputs = det.head(feats)
        anchors = det.anchor_generator(images, feats)
        return det.compute_loss(targets, head_outputs, anchors, [x.size(2) * x.size(3) for x in feats])


@DETECTORS.register("retinanet")
class Retinanet(_DenseOneStage):
    """RetinaNet (9 anchors per location, focal loss); GroupNorm heads with ``head_convs`` convs."""

    def build(self, channels, level_strides, num_classes, opts):
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

        sizes = tuple(tuple(int(4 * s * 2 ** (i / 3)) for i in range(3)) for s in level_strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(level_strides))
        head = RetinaNetHead(channels, 9, num_classes, norm_layer=partial(nn.GroupNorm, 32))
        for tower in (head.classification_head, head.regression_head):
            tower.conv = tower.conv[: opts.head_convs]
        return RetinaNet(_FeaturesIn(channels), num_classes, anchor_generator=anchors, head=head,
                         score_thresh=opts.score_thresh, nms_thresh=opts.nms_thresh, detections_per_img=opts.detections_per_img)

    def losses(self, det, images, features, targets):
        feats = list(features.values())
        return det.compute_loss(targets, det.head(feats), det.anchor_generator(images, feats))


@DETECTORS.register("ssdlite")
class Ssdlite(Arch):
    """SSDlite head (depthwise-separable convs, 6 default boxes per location, hard negative mining)."""

    label_offset = 1

    def build(self, channels, level_strides, num_classes, opts):
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
        from torchvision.models.detection.ssd import SSD
        from torchvision.models.detection.ssdlite import SSDLiteHead

        levels = len(level_strides)
        anchors = DefaultBoxGenerator([[2, 3]] * levels, min_ratio=0.1, max_ratio=0.95)
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        head = SSDLiteHead([channels] * levels, anchors.num_anchors_per_location(), num_classes + 1, norm)
        return SSD(_FeaturesIn(channels), anchors, (320, 320), num_classes + 1, head=head, score_thresh=opts.score_thresh,
                   nms_thresh=opts.nms_thresh, detections_per_img=opts.detections_per_img)

    def losses(self, det, images, features, targets):
        from torchvision.ops import boxes as box_ops

        feats = list(features.values())
        head_outputs, anchors = det.head(feats), det.anchor_generator(images, feats)
        matched = []
        for anchors_i, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched.append(torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device))
            else:
                matched.append(det.proposal_matcher(box_ops.box_iou(target["boxes"], anchors_i)))
        return det.compute_loss(targets, head_outputs, anchors, matched)

    def detect(self, det, images, features):
        feats = list(features.values())
        return det.postprocess_detections(det.head(feats), det.anchor_generator(images, feats), images.image_sizes)


@DETECTORS.register("fasterrcnn")
class FasterRcnn(Arch):
    """Faster R-CNN: RPN over every level, RoIAlign 7x7 on the neck maps, a 2-layer MLP box head
    of width ``4 * channels`` (torchvision's 1024-wide head on 256 channels is ~14M parameters)."""

    label_offset = 1

    def build(self, channels, level_strides, num_classes, opts):
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
        from torchvision.ops import MultiScaleRoIAlign

        sizes = tuple((4 * s,) for s in level_strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(level_strides))
        names = [str(i) for i in range(len(opts.strides))]  # RoIAlign on the backbone levels, not the extras
        width = 4 * channels
        return FasterRCNN(
            _FeaturesIn(channels), None, rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(names, 7, 2), box_head=TwoMLPHead(channels * 49, width),
            box_predictor=FastRCNNPredictor(width, num_classes + 1),
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500,
            rpn_post_nms_top_n_test=300, box_batch_size_per_image=256, box_score_thresh=opts.score_thresh,
            box_nms_thresh=opts.nms_thresh, box_detections_per_img=opts.detections_per_img,
        )

    def losses(self, det, images, features, targets):
        proposals, rpn_losses = det.rpn(images, features, targets)
        _, roi_losses = det.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **roi_losses}

    def detect(self, det, images, features):
        proposals, _ = det.rpn(images, features)
        detections, _ = det.roi_heads(features, proposals, images.image_sizes)
        return detections
