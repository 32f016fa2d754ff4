"""Image classification kind: real pretrained MobileNetV2 on real vehicle crops (Bus vs Car) cut from
Vehicles-OpenImages; bad images stop the run with the file named."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from mmsft.cli.main import main
from task_fixtures import VEHICLES, vehicle_crops
pytestmark = pytest.mark.skipif(not (VEHICLES / "data.yaml").is_file(), reason="shared data missing")


def _task(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "cls.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: vehicle_crops
        kind: image_classification
        data: {{root: {root}, source: ., image_size: 96}}
        model: {{backbone: mobilenet-v2, heads: {{classification: {{type: classification, options: {{dropout: 0.0}}}}}}}}
        metrics: [accuracy, f1_macro]
        train: {{epochs: 4, batch_size: 8, eval_batch_size: 16, lr: 1.0e-3, log_every_steps: 1, schedule: constant,
                 warmup_ratio: 0.0, early_stopping: {{metric: accuracy}}}}
        """))
    return path


def test_image_classification_trains_and_predicts(tmp_path, isolated, capsys):
    root = vehicle_crops(tmp_path / "crops", {"train": 8, "val": 4, "test": 4})
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
    root = vehicle_crops(tmp_path / "crops", {"train": 2, "val": 1, "test": 1})
    (root / "train" / "Car" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    assert main(["train", str(_task(tmp_path, root))]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg: cannot read image" in err and err.count("\n") == 1
    assert not (isolated / "runs").exists()


def test_classification_head_average_pools_image_maps():
    from types import SimpleNamespace

    from mmsft.errors import UserError
    from mmsft.models.features import Features
    from mmsft.models.heads import ClassificationHead, ClassificationOptions

    torch.manual_seed(0)
    backbone = SimpleNamespace(family="image", width=8, entry=None, model=None)
    head = ClassificationHead(backbone, ClassificationOptions(dropout=0.0), num_labels=3)
    assert head.pooling == "gap"
    maps = torch.rand(2, 8, 4, 4)
    pooled = head.pool(Features(maps=[torch.rand(2, 4, 8, 8), maps]), {})
    assert torch.allclose(pooled, maps.mean((2, 3)))
    assert head(pooled, {})["logits"].shape == (2, 3)
    with pytest.raises(UserError, match="does not fit a image backbone"):
        ClassificationHead(backbone, ClassificationOptions(pooling="mean"), num_labels=3)
