"""Detection heads: the backbone's feature maps -> a neck -> a torchvision detector, one ``HEADS``
entry per ``DETECTORS`` family (``fcos``, ``retinanet``, ``ssdlite``, ``fasterrcnn``).

The head takes the (B, 3, S, S) batch in [0, 1] as ``pixel_values`` (letterboxed, so no resize happens
inside) and ``targets`` (one ``{"boxes", "labels"}`` per image); in train mode its outputs are the
detector's losses (``loss`` = their sum), in eval mode ``detections`` (labels 0..K-1, boxes in input
pixels).  Building it sets which backbone maps are computed (``strides``) and whether the backbone's
batch-norm statistics stay frozen (``batch_norm``).
"""
from __future__ import annotations

from torchvision.models.detection.image_list import ImageList

from ..models.features import Features
from ..models.heads import Head
from ..registry import HEADS
from .detectors import DETECTORS, DetectorOptions
from .necks import NECKS


class DetectionHead(Head):
    Options = DetectorOptions
    reads = "features"
    arch_name = ""

    def __init__(self, backbone, options: DetectorOptions, num_classes: int, target: str = "targets"):
        super().__init__(target)
        arch = DETECTORS.get(self.arch_name)()
        backbone.out_indices = backbone.select(options.strides)
        backbone.freeze_batch_norm = options.batch_norm == "frozen"
        in_channels = [backbone.channels[i] for i in backbone.out_indices]
        level_strides = list(options.strides) + [options.strides[-1] * 2 ** (i + 1) for i in range(options.extra_levels)]
        self.neck = NECKS.get(options.neck)(in_channels, options.channels, options.extra_levels)
        self.detector = arch.build(options.channels, level_strides, num_classes, options)
        self.arch, self.options, self.num_classes = arch, options, num_classes

    def forward(self, features: Features, batch: dict) -> dict:
        images = batch["pixel_values"]
        maps = self.neck(features.maps)
        image_list = ImageList(images, [tuple(images.shape[-2:])] * images.shape[0])
        offset = self.arch.label_offset
        if self.training:
            targets = batch.get(self.target)
            if targets is None:
                raise ValueError("training a detector needs targets")
            targets = [{"boxes": t["boxes"], "labels": t["labels"] + offset} for t in targets]
            losses = self.arch.losses(self.detector, image_list, maps, targets)
            return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        detections = self.arch.detect(self.detector, image_list, maps)
        return {"detections": [{**d, "labels": d["labels"] - offset} for d in detections]}

    def loss(self, outputs: dict, batch: dict):
        return outputs.get("loss")


for _name in DETECTORS.names():
    HEADS.add(_name, type(f"{_name.capitalize()}Head", (DetectionHead,), {"arch_name": _name, "__doc__": f"The {_name} detector as a head."}))
