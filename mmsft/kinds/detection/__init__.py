"""The ``detection`` kind: YOLO / COCO / VOC data, detection heads, mAP evaluation, annotated
predictions, data-check and augmentation bindings."""
from .data import DetectionData, load_splits  # noqa: F401
from .kind import Detection  # noqa: F401
from .qc import detection_view  # noqa: F401
