"""COCO-style box mAP (torchmetrics MeanAveragePrecision): map50, map50_95 and AP per class."""
import importlib.util

import datasets

from mmsft.metrics.bases import BaseMetric

_DESCRIPTION = (
    "Box mean average precision computed by torchmetrics.detection.MeanAveragePrecision with the "
    "COCO protocol (101-point interpolation, IoU thresholds 0.50:0.05:0.95, at most 100 detections "
    "per image, area range 'all'). Backend: faster_coco_eval when installed, else pycocotools; both "
    "run offline. Values are 0-1; torchmetrics/COCO report -1 when there is no ground truth at all. "
    "ap_per_class lists only classes that have ground-truth boxes (AP is undefined otherwise)."
)
_KWARGS = """
Args:
    predictions (list of dict): per image {"boxes": [[x1, y1, x2, y2], ...], "scores": [float, ...],
        "labels": [int, ...]} (lists, numpy arrays or tensors; an image may have no boxes).
    references (list of dict): per image {"boxes": [[x1, y1, x2, y2], ...], "labels": [int, ...]}.
    box_format (str, optional): "xyxy" (default), "xywh" or "cxcywh", absolute pixels.
Returns:
    map50 (float): mAP at IoU 0.5.
    map50_95 (float): mAP averaged over IoU 0.5:0.95 (the COCO headline number).
    ap_per_class (dict): class id -> {"ap50_95": float, "ap50": float}.
"""

_FLOATS = datasets.Sequence(datasets.Value("float64"))
_INTS = datasets.Sequence(datasets.Value("int64"))
_FEATURES = datasets.Features({
    "predictions": {"boxes": datasets.Sequence(_FLOATS), "scores": _FLOATS, "labels": _INTS},
    "references": {"boxes": datasets.Sequence(_FLOATS), "labels": _INTS},
})


def _backend():
    for name in ("faster_coco_eval", "pycocotools"):
        if importlib.util.find_spec(name) is not None:
            return name
    raise ImportError("detection_map needs pycocotools or faster_coco_eval: pip install pycocotools")


def _tensors(item, keys):
    import torch

    out = {}
    for key in keys:
        dtype = torch.int64 if key == "labels" else torch.float32
        value = torch.as_tensor(item[key], dtype=dtype)
        out[key] = value.reshape(-1, 4) if key == "boxes" else value.reshape(-1)
    return out


class DetectionMap(BaseMetric):
    FEATURES = _FEATURES
    DESCRIPTION = _DESCRIPTION
    CITATION = "Lin et al., 2014. Microsoft COCO: Common Objects in Context."
    INPUTS = _KWARGS

    def _compute(self, predictions, references, box_format="xyxy"):
        from torchmetrics.detection import MeanAveragePrecision

        metric = MeanAveragePrecision(box_format=box_format, iou_type="bbox", class_metrics=True,
                                      extended_summary=True, backend=_backend())
        metric.update([_tensors(p, ("boxes", "scores", "labels")) for p in predictions],
                      [_tensors(r, ("boxes", "labels")) for r in references])
        out = metric.compute()
        classes = out["classes"].reshape(-1).tolist()
        per_class_5095 = out["map_per_class"].reshape(-1).tolist()
        # precision: [iou_thr, recall_thr, class, area, max_dets]; iou 0.5 is index 0, area 'all' 0.
        precision = out["precision"]
        per_class = {}
        for k, (cls, ap5095) in enumerate(zip(classes, per_class_5095)):
            if ap5095 < 0:  # no ground truth for this class
                continue
            curve = precision[0, :, k, 0, -1]
            curve = curve[curve > -1]
            ap50 = float(curve.mean()) if curve.numel() else -1.0
            per_class[int(cls)] = {"ap50_95": float(ap5095), "ap50": ap50}
        return {"map50": float(out["map_50"]), "map50_95": float(out["map"]), "ap_per_class": per_class}
