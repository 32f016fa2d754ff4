"""Detection data: one sample format, YOLO / COCO / VOC loaders with validation, box-aware transforms.

    data = load_yolo("/data/vehicles/data.yaml", "train")          # or load_coco / load_voc / load_detection
    ds = DetectionDataset(data, detection_transforms(train=True, size=416))
    loader = DataLoader(ds, batch_size=8, collate_fn=detection_collate)
"""
from .boxes import check_box, hflip_boxes, letterbox_params, unletterbox_boxes  # noqa: F401
from .coco import load_coco  # noqa: F401
from .dataset import DetectionDataset, detection_collate, read_rgb  # noqa: F401
from .formats import detect_format, load_detection  # noqa: F401
from .samples import REASONS, BadSample, DetectionSample, DetectionSet, probe_image  # noqa: F401
from .transforms import Letterbox, detection_transforms, resize_transform  # noqa: F401
from .voc import load_voc  # noqa: F401
from .yolo import load_yolo, read_data_yaml  # noqa: F401
