"""Detection: backbone stages, adapters on the detector (frozen really freezes, LoRA targets), box
alignment through the augmentation, bad input through the CLI, and a short real training run with
eval / predict on the real pretrained MobileNetV2 and real Vehicles-OpenImages images."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torchvision import tv_tensors

from mmsft.adapters import apply_adapters, load_adapters, save_adapters
from mmsft.cli.main import main
from task_fixtures import VEHICLES, small_yolo

NAMES = ["Ambulance", "Bus", "Car", "Motorcycle", "Truck"]

pytestmark = pytest.mark.skipif(not (VEHICLES / "data.yaml").is_file(), reason="shared data missing")


def _detector(arch: str = "fcos", **options):
    """A composed model: MobileNetV2 (real weights) + one detection head."""
    from mmsft.models import ComposedModel
    from mmsft.registry import HEADS
    from mmsft.vision.detectors import DetectorOptions
    from mmsft.vision.trunk import ImageBackbone

    torch.manual_seed(0)
    backbone, _ = ImageBackbone.load("mobilenet-v2")
    return ComposedModel(backbone, {}, {"detection": HEADS.get(arch)(backbone, DetectorOptions(**options), num_classes=len(NAMES))})


def _adapt(model, method: str, **options):
    from mmsft.registry import ADAPTERS
    from mmsft.spec import AdapterSpec

    specs = {method: AdapterSpec(method=method, options=ADAPTERS.get(method).parse_options(options))}
    apply_adapters(model, specs)
    return specs


def _batch(n: int = 2, size: int = 128):
    from mmsft.vision import DetectionDataset, detection_collate, detection_transforms, load_yolo

    data = load_yolo(VEHICLES / "data.yaml", "valid")
    ds = DetectionDataset(data.samples[:n], detection_transforms(False, size))
    return detection_collate([ds[i] for i in range(n)])


def _step(model, images, targets, lr=1e-2):
    from mmsft.training.optim import build_optimizer

    optimizer = build_optimizer(model, lr, 0.0)
    model.train()
    loss = model(pixel_values=images, targets=targets)["loss"]
    loss.backward()
    optimizer.step()
    return loss


def _snapshot(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- backbone and adapters
def test_backbone_stages_and_outputs():
    model = _detector()
    backbone = model.backbone
    assert backbone.strides == [2, 4, 8, 16, 32] and backbone.channels == [16, 24, 32, 96, 1280]
    assert backbone.out_indices == [3, 4]  # strides 16 and 32
    maps = backbone({"pixel_values": torch.rand(1, 3, 128, 128)}).maps
    assert [tuple(m.shape[1:]) for m in maps] == [(96, 8, 8), (1280, 4, 4)]
    assert backbone.select([8, 16, 32]) == [2, 3, 4]
    names = backbone.lora_targets_auto()
    modules = dict(backbone.model.named_modules())
    assert names and all(modules[n].kernel_size == (1, 1) and modules[n].groups == 1 for n in names)


@pytest.mark.parametrize("arch", ["fcos", "retinanet", "ssdlite", "fasterrcnn"])
def test_every_detector_trains_and_detects(arch):
    images, targets = _batch()
    model = _detector(arch, channels=64, extra_levels=1)
    out = model.train()(pixel_values=images, targets=targets)
    assert out["loss"].requires_grad and torch.isfinite(out["loss"]) and len(out["heads"]["detection"]) > 2
    detections = model.eval()(pixel_values=images)["heads"]["detection"]["detections"]
    assert len(detections) == 2
    for d in detections:
        assert d["boxes"].shape[1:] == (4,) and len(d["scores"]) == len(d["labels"])
        assert ((d["labels"] >= 0) & (d["labels"] < len(NAMES))).all()


def test_frozen_really_freezes_backbone_and_bn_stats():
    images, targets = _batch()
    model = _detector()
    _adapt(model, "frozen")
    before, heads_before = _snapshot(model.backbone), _snapshot(model.heads)
    _step(model, images, targets)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats
    assert any(not torch.equal(heads_before[k], v) for k, v in model.heads.state_dict().items())


def test_frozen_first_stages_and_bn_policy():
    images, targets = _batch()
    model = _detector()
    _adapt(model, "frozen", train_top_layers=3)  # first 2 stages frozen
    before = _snapshot(model.backbone)
    _step(model, images, targets)
    after = model.backbone.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        if key.startswith(("model.stages.0.", "model.stages.1.")) or "running_" in key or "num_batches" in key:
            assert same, key  # frozen stages, and BN statistics everywhere (batch_norm: frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.stages.4.") and k.endswith("weight"))

    model = _detector(batch_norm="train")
    before = _snapshot(model.backbone)
    _step(model, images, targets)
    assert any(not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items() if "running_mean" in k)


def test_lora_on_pointwise_convs_saves_and_reloads(tmp_path):
    images, targets = _batch()
    model = _detector()
    specs = _adapt(model, "lora", r=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items() if "lora_" not in k}
    _step(model, images, targets)
    assert all(torch.equal(base[k], v) for k, v in model.backbone.state_dict().items() if k in base)
    save_adapters(model, specs, tmp_path)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    fresh = _detector()
    load_adapters(fresh, specs, tmp_path)
    fresh.heads.load_state_dict(model.heads.state_dict())
    x = {"pixel_values": torch.rand(1, 3, 128, 128)}
    with torch.no_grad():
        a, b = model.eval().backbone(x).maps[-1], fresh.eval().backbone(x).maps[-1]
        plain = _detector().eval().backbone(x).maps[-1]
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, plain, atol=1e-4)


# ----------------------------------------------------------------------------- boxes stay on their objects
def test_augmentation_keeps_boxes_on_objects():
    """A white rectangle on black: after flip / IoU crop / letterbox, the box still frames it."""
    from mmsft.vision import detection_transforms
    from mmsft.vision.inference import restore_boxes

    image = torch.zeros(3, 300, 400, dtype=torch.uint8)
    image[:, 60:180, 250:370] = 255
    box = torch.tensor([[250.0, 60.0, 370.0, 180.0]])
    pipeline = detection_transforms(True, 256, hflip_p=0.5, crop_p=1.0, color_jitter=False)
    for seed in range(12):
        torch.manual_seed(seed)
        target = {"boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(300, 400)), "labels": torch.tensor([1])}
        out_image, out = pipeline(tv_tensors.Image(image), target)
        white = (out_image[0] > 0.9).nonzero()
        if not len(out["boxes"]):
            continue
        x1, y1, x2, y2 = out["boxes"][0].tolist()
        ys, xs = white[:, 0].float(), white[:, 1].float()
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5, seed
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5, seed
    square = torch.tensor([[32.0, 48.0 + 32, 96.0, 112.0 + 32]])  # letterboxed 400x300 -> 256 adds 32 px bars
    assert torch.allclose(restore_boxes(square, 400, 300, 256, "letterbox"), torch.tensor([[50.0, 75, 150, 175]]), atol=1e-4)
    assert torch.allclose(restore_boxes(torch.tensor([[64.0, 64, 128, 128]]), 400, 300, 256, "resize"),
                          torch.tensor([[100.0, 75, 200, 150]]))


# ----------------------------------------------------------------------------- tasks on a small real dataset
def _task(tmp_path: Path, data: Path, extra_data: str = "", train: str = "epochs: 1") -> Path:
    path = tmp_path / "det.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: det
        kind: detection
        data:
          root: {data}
          source: data.yaml
          splits: {{train: train, validation: valid, test: test}}
          image_size: 192
          augment: {{hflip: 0.0, iou_crop: 0.0, color_jitter: false}}
        {textwrap.indent(extra_data, '  ')}
        model:
          backbone: mobilenet-v2
          heads: {{detection: {{type: fcos, options: {{channels: 64, extra_levels: 1}}}}}}
        metrics: [detection_map]
        train: {{{train}, batch_size: 3, eval_batch_size: 8, lr: 3.0e-4, head_lr: 3.0e-3, log_every_steps: 1,
                 schedule: constant, warmup_ratio: 0.0, early_stopping: {{metric: map50_95}}}}
        """))
    return path


def _line(label_file: Path, line: str) -> None:
    """Keep the file's first (valid) line and add ``line`` as line 2."""
    label_file.write_text(label_file.read_text().splitlines()[0] + "\n" + line + "\n")


def _first(root: Path, split: str = "train") -> Path:
    return sorted((root / split / "labels").glob("*.txt"))[0]


BAD_CASES = {
    "class id outside the class list": (lambda r: _line(_first(r), "7 0.5 0.5 0.2 0.2"), "class id 7 is outside the class list", ":2"),
    "box outside the image": (lambda r: _line(_first(r), "1 0.9 0.5 0.5 0.2"), "lies outside the", ":2"),
    "zero-area box": (lambda r: _line(_first(r), "1 0.5 0.5 0 0.2"), "is not positive", ":2"),
    "label without image": (lambda r: (r / "train/labels/ghost.txt").write_text("1 0.5 0.5 0.2 0.2\n"), "label file has no matching image", "ghost.txt"),
    "image without label": (lambda r: _first(r).unlink(), "no label file", ".jpg"),
    "corrupt image": (lambda r: (r / "train/images/broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg"), "cannot read image", "broken.jpg"),
    "empty split": (lambda r: [p.unlink() for p in (r / "test").rglob("*.*")], "empty split", "test"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_exits_2_without_run_folder(tmp_path, isolated, capsys, case):
    make_bad, message, where = BAD_CASES[case]
    root = small_yolo(tmp_path / "data", n_train=2, n_eval=1)
    make_bad(root)
    code = main(["train", str(_task(tmp_path, root))])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and where in err, err
    assert err.count("\n") == 1  # one message, no traceback
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


def test_bad_model_options_exit_2(tmp_path, isolated, capsys):
    root = small_yolo(tmp_path / "data", n_train=1, n_eval=1)
    task = _task(tmp_path, root)
    assert main(["train", str(task), "model.heads.detection.chanels=64"]) == 2
    assert "model.heads.detection.options.chanels: unknown key 'chanels'. Did you mean 'channels'?" in capsys.readouterr().err
    assert main(["train", str(task), "model.heads.detection.type=yolo"]) == 2
    assert "unknown head 'yolo'" in capsys.readouterr().err


def test_short_real_training_run_eval_and_predict(tmp_path, isolated, capsys):
    """Real pretrained MobileNetV2 on 6 real images: the loss falls; report, eval and predict work;
    a corrupt image is skipped (skip_bad) and counted in the report."""
    root = small_yolo(tmp_path / "data")
    (root / "train/images/broken.jpg").write_bytes(b"\xff\xd8 truncated")
    task = _task(tmp_path, root, extra_data="skip_bad: true", train="epochs: 8")
    run = tmp_path / "run"
    assert main(["train", str(task), "--output", str(run)]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.75 * sum(losses[:4]) / 4, losses
    report = (run / "report.md").read_text()
    assert "## Per-class AP (test)" in report and "| Bus | 5 |" in report and "test_grid.png" in report
    assert "unreadable_image=1" in report
    assert (run / "test_grid.png").stat().st_size > 10_000
    capsys.readouterr()

    assert main(["eval", str(run)]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"map50", "map50_95"}
    image = sorted((root / "test/images").glob("*.jpg"))[0]
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "pred")]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["input"] == str(image) and isinstance(row["boxes"], list)
    saved = json.loads((tmp_path / "pred" / f"{image.stem}.json").read_text())
    assert saved["boxes"] == row["boxes"]
    from PIL import Image

    with Image.open(tmp_path / "pred" / f"{image.stem}.jpg") as im:
        assert im.size == (416, 416)
    assert main(["predict", str(run), str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg: image file not found" in capsys.readouterr().err
