"""Image classification kind: real pretrained MobileNetV2 on real vehicle crops (Bus vs Car) cut from
Vehicles-OpenImages; bad images stop the run with the file named."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from mmsft.cli.main import main
from mmsft.paths import data_root

VEHICLES = data_root() / "vehicles_openimages"
pytestmark = pytest.mark.skipif(not (VEHICLES / "data.yaml").is_file(), reason="shared data missing")


def _crops(root: Path, per_class: dict[str, int]) -> Path:
    """Crops of the largest Bus / Car boxes of the valid split as an ImageFolder tree."""
    from PIL import Image

    from mmsft.vision import load_yolo

    data = load_yolo(VEHICLES / "data.yaml", "valid")
    crops = {"Bus": [], "Car": []}
    for sample in data.samples:
        for box, label in zip(sample.boxes.tolist(), sample.labels):
            name = data.class_names[label]
            if name in crops and min(box[2] - box[0], box[3] - box[1]) >= 64:
                crops[name].append((sample.image_path, box))
    for name, items in crops.items():
        for i, (path, box) in enumerate(items[: sum(per_class.values())]):
            split = "train" if i < per_class["train"] else "val" if i < per_class["train"] + per_class["val"] else "test"
            (root / split / name).mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                im.convert("RGB").crop(tuple(int(v) for v in box)).save(root / split / name / f"{i}.jpg")
    return root


def _task(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "cls.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: vehicle_crops
        kind: image_classification
        data: {{root: {root}, source: ., image_size: 96}}
        model: {{backbone: mobilenet-v2, head: image_classification, dropout: 0.0}}
        metrics: [accuracy, f1_macro]
        train: {{epochs: 4, batch_size: 8, eval_batch_size: 16, lr: 1.0e-3, log_every_steps: 1, schedule: constant,
                 warmup_ratio: 0.0, early_stopping: {{metric: accuracy}}}}
        """))
    return path


def test_image_classification_trains_and_predicts(tmp_path, isolated, capsys):
    root = _crops(tmp_path / "crops", {"train": 8, "val": 4, "test": 4})
    run = tmp_path / "run"
    assert main(["train", str(_task(tmp_path, root)), "--adapter", "frozen", "--output", str(run), "train.epochs=4"]) == 0
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]), losses
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.5 and (run / "confusion_matrix.png").is_file()
    capsys.readouterr()
    image = next((root / "test" / "Bus").glob("*.jpg"))
    assert main(["predict", str(run), str(image)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] in ("Bus", "Car") and abs(sum(row["scores"].values()) - 1) < 1e-3


def test_image_classification_bad_image_exits_2(tmp_path, isolated, capsys):
    root = _crops(tmp_path / "crops", {"train": 2, "val": 1, "test": 1})
    (root / "train" / "Car" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    assert main(["train", str(_task(tmp_path, root))]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg: cannot read image" in err and err.count("\n") == 1
    assert not (isolated / "runs").exists()


def test_image_head_pools_maps_and_vectors():
    from mmsft.models.heads import HEADS

    torch.manual_seed(0)
    head = HEADS.get("image_classification")(8, 3, 0.0, 0)
    maps = torch.rand(2, 8, 4, 4)
    assert torch.allclose(head(maps), head(maps.mean((2, 3))))
