"""Image + text: retrieval metrics on a hand-made similarity matrix, multi-label metrics, each fusion
module trains and changes outputs, the matching loss, bad COCO files, and short real runs of
both kinds on COCO-MINI (real MiniLM-L6 and MobileNetV2)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmsft import metrics as M
from mmsft.cli.main import main
from mmsft.paths import data_root

COCO = data_root() / "coco_mini_captions"
needs_coco = pytest.mark.skipif(not (COCO / "annotations").is_dir(), reason="shared data missing")


def test_retrieval_recall_on_a_hand_made_matrix():
    # 4 captions (rows) x 3 images (columns); captions 0, 1 belong to image 0, caption 2 to image 1, caption 3 to image 2
    sims = [[0.9, 0.1, 0.0],   # image 0 ranks 1st -> hit at 1
            [0.2, 0.8, 0.1],   # image 0 ranks 2nd
            [0.7, 0.1, 0.6],   # image 1 ranks 3rd
            [0.1, 0.2, 0.3]]   # image 2 ranks 1st
    out = M.compute(["retrieval_recall"], predictions=sims, references=[[0], [0], [1], [2]])
    assert out["r1_t2i"] == pytest.approx(2 / 4) and out["r5_t2i"] == 1.0
    # columns: image 0's best caption is caption 0 (rank 1); image 1's texts by score: c1 0.8, c2, c3, c0 -> caption 2 ranks 3rd
    # (0.1 ties: stable order keeps c0, c2), image 2's: c2 0.6 first, c3 second
    assert out["r1_i2t"] == pytest.approx(1 / 3) and out["r5_i2t"] == 1.0
    assert out["r_mean"] == pytest.approx((0.5 + 1 + 1 + 1 / 3 + 1 + 1) / 6)


def test_multilabel_metrics():
    probs = [[0.9, 0.2, 0.1], [0.6, 0.7, 0.2], [0.1, 0.4, 0.3]]
    truth = [[1, 0, 0], [1, 1, 0], [0, 1, 0]]  # class 2 never present: left out of the mAP
    out = M.compute(["multilabel_map", "micro_f1"], predictions=probs, references=truth)
    assert out["multilabel_map"] == pytest.approx((1.0 + 1.0) / 2)  # both present classes ranked perfectly
    assert out["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))  # tp 3 (0.9, 0.6, 0.7), fn 1 (0.4), fp 0


def _towers(tiny_bert):
    from mmsft.models.text import TextBackbone
    from mmsft.vision.trunk import ImageBackbone

    text, tokenizer = TextBackbone.load(str(tiny_bert))
    image, _ = ImageBackbone.load("mobilenet-v2")
    image.out_indices = [len(image.blocks()) - 1]
    return text, tokenizer, image


@needs_coco
@pytest.mark.parametrize("fusion", ["late_concat", "gated", "cross_attention"])
def test_each_fusion_module_trains_and_changes_outputs(tiny_bert, fusion):
    from mmsft.models import ComposedModel
    from mmsft.models.matching import MatchingHead, MatchingOptions
    from mmsft.models.modules.fusion import FusionOptions
    from mmsft.registry import MODULES

    torch.manual_seed(0)
    text, tokenizer, image = _towers(tiny_bert)
    module = MODULES.get(fusion)(text, FusionOptions(dropout=0.0), towers={"image": image})
    model = ComposedModel(text, {fusion: module}, {"matching": MatchingHead(text, MatchingOptions(), tower_width=image.width)},
                          towers={"image": image})
    enc = tokenizer(["a dog on a bed", "two planes at an airport", "a plate of food"], padding=True, return_tensors="pt")
    batch = {**enc, "pixel_values": torch.rand(3, 3, 64, 64), "pair_ids": torch.tensor([1, 2, 3])}
    model.eval()
    with torch.no_grad():
        before = model(**batch)["heads"]["matching"]["scores"].clone()
    assert before.shape == (3, 3)
    text.requires_grad_(False)
    image.requires_grad_(False)  # frozen towers (batch-norm statistics fixed), as the kinds' default adapter leaves them
    params = [p for p in module.parameters()] + list(model.heads.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    snapshot = {k: v.clone() for k, v in module.state_dict().items()}
    model.train()
    losses = []
    for _ in range(30):
        loss = model(**batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert any(not torch.equal(snapshot[k], v) for k, v in module.state_dict().items())  # the module trained
    assert losses[-1] < 0.5 * losses[0], losses  # it learned to pick each caption's own image
    model.eval()
    with torch.no_grad():
        after = model(**batch)["heads"]["matching"]["scores"]
    assert not torch.allclose(before, after)


def test_matching_loss_counts_every_caption_of_an_image_as_positive():
    from types import SimpleNamespace

    from mmsft.models.matching import MatchingHead, MatchingOptions

    head = MatchingHead(SimpleNamespace(width=4), MatchingOptions(), tower_width=4)
    scores = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    same_image = head.loss({"scores": scores}, {"pair_ids": torch.tensor([7, 7, 9])})  # rows 0 and 1: one image
    distinct = head.loss({"scores": scores}, {"pair_ids": torch.tensor([7, 8, 9])})
    assert same_image < 0.01 < distinct  # two equal-scored true pairs are no error when both are positives


def _coco_copy(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    shutil.copytree(COCO / "annotations", root / "annotations")
    for split in ("train2017", "val2017"):
        (root / split).symlink_to(COCO / split)
    return root


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


BAD = {
    "caption for a missing image": (lambda d: d["annotations"].append({"image_id": 999, "id": 5, "caption": "ghost"}), "captions_train2017.json",
                                    "caption 5 is for image id 999, which the file does not list"),
    "image without captions": (lambda d: d["images"].append({"id": 4242, "file_name": "000000493652.jpg"}), "captions_train2017.json",
                               "image id 4242 (000000493652.jpg) has no caption"),
    "category outside the list": (lambda d: d["annotations"][0].update(category_id=777), "instances_train2017.json",
                                  "has category id 777, outside the category list"),
}


@needs_coco
@pytest.mark.parametrize("case", list(BAD))
def test_bad_coco_files_exit_2_naming_file_and_id(tmp_path, isolated, capsys, case):
    change, name, message = BAD[case]
    root = _coco_copy(tmp_path)
    _edit(root / "annotations" / name, change)
    code = main(["train", "coco_multilabel", f"data.root={root.parent}", "data.splits.train.captions=coco/annotations/captions_train2017.json",
                 "data.splits.train.images=coco/train2017", "data.splits.train.instances=coco/annotations/instances_train2017.json",
                 "data.splits.test.captions=coco/annotations/captions_val2017.json", "data.splits.test.images=coco/val2017",
                 "data.splits.test.instances=coco/annotations/instances_val2017.json"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and name in err and err.count("\n") == 1, err
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


@needs_coco
def test_config_mistakes_are_caught_before_training(isolated, capsys):
    assert main(["train", "coco_retrieval", "model.towers={}"]) == 2
    assert "retrieval needs an image tower" in capsys.readouterr().err
    assert main(["train", "coco_multilabel", "model.towers={audio: x}"]) == 2
    assert "takes no tower 'audio'" in capsys.readouterr().err
    assert main(["train", "coco_multilabel", "model.heads.classification.pooling=mean"]) == 2
    assert "do not go together" in capsys.readouterr().err


@needs_coco
def test_short_real_runs_of_both_kinds_train_evaluate_and_predict(tmp_path, isolated, capsys):
    common = ["train.epochs=3", "data.max_train_images=40", "train.threads=1"]
    retrieval = tmp_path / "retrieval"
    assert main(["train", "coco_retrieval", "--output", str(retrieval), *common]) == 0
    metrics = json.loads((retrieval / "metrics.json").read_text())["test"]
    assert metrics["r10_t2i"] > 5 * 10 / 79  # well above chance (10 of 79 images)
    assert (retrieval / "retrieval_grid.png").stat().st_size > 20_000
    capsys.readouterr()
    assert main(["predict", str(retrieval), "a plane at an airport"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(row["images"]) == 3 and all(Path(r["image"]).is_file() for r in row["images"])

    multilabel = tmp_path / "multilabel"
    assert main(["train", "coco_multilabel", "--output", str(multilabel), *common]) == 0
    test = json.loads((multilabel / "metrics.json").read_text())["test"]
    assert 0 < test["multilabel_map"] <= 1 and (multilabel / "multilabel_grid.png").is_file()
    capsys.readouterr()
    image = sorted((COCO / "val2017").glob("*.jpg"))[0]
    assert main(["predict", str(multilabel), json.dumps({"image": str(image), "caption": "a kitchen"})]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(row) == {"input", "labels", "scores"} and len(row["scores"]) == 5
    assert main(["predict", str(multilabel), str(image)]) == 2  # image+text needs a caption
    assert "needs a caption" in capsys.readouterr().err
