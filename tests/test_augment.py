"""Augmentation methods, the ``augment:`` block (train only, never leaking), ``mmsft data augment``,
and the balanced samplers."""
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from mmsft.augment import METHODS, augment_rows, methods_for, parse_entries
from mmsft.cli.main import main
from mmsft.data.splits import normalise
from mmsft.errors import UserError
from mmsft.kinds.text_classification import build_splits
from mmsft.spec import build_run_config
from mmsft.training.sampling import ResumableBatchSampler, epoch_batches

from conftest import SHARED_DATA

TEXT_METHODS = ["token_swap", "token_delete", "token_insert", "entity_swap", "template", "concat"]
ROWS = [
    {"text": "Nokia said net sales rose 5.2 % to EUR 120.5 mn , while operating profit rose to EUR 9.1 mn .", "label": "positive", "source": "f:1"},
    {"text": "Componenta 's operating loss widened to EUR 4.3 mn , and sales fell 12 % in 2009 .", "label": "negative", "source": "f:2"},
    {"text": "Stora Enso reported sales of EUR 2.1 bn , but profit was flat at EUR 77 mn .", "label": "neutral", "source": "f:3"},
    {"text": "Elisa said revenue grew 8 % to EUR 450 mn , and the margin improved in 2010 .", "label": "positive", "source": "f:4"},
    {"text": "Kone cut 300 jobs in Finland , while orders fell 20 % in the quarter .", "label": "negative", "source": "f:5"},
    {"text": "Outokumpu will publish its results on 5 February 2008 .", "label": "neutral", "source": "f:6"},
]


def test_text_methods_are_registered_for_text_classification_only():
    assert set(TEXT_METHODS) <= set(methods_for("text_classification"))
    assert "image_boxes" in methods_for("detection") and "image_boxes" not in methods_for("text_classification")
    for name in TEXT_METHODS:
        assert METHODS.get(name).kinds == ("text_classification",)


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_each_method_makes_new_same_label_rows_deterministically(method):
    entries = parse_entries([{"method": method, "factor": 1.0}], "text_classification", "data.augment")
    new, stats = augment_rows(ROWS, entries, seed=3)
    again, _ = augment_rows(ROWS, entries, seed=3)
    other, _ = augment_rows(ROWS, entries, seed=4)
    assert new == again and new, stats
    assert [r["text"] for r in new] != [r["text"] for r in other]
    originals = {normalise(r["text"]) for r in ROWS}
    by_source = {r["source"]: r for r in ROWS}
    for row in new:
        assert normalise(row["text"]) not in originals
        parent = by_source[row["source"].split(":", 2)[2]]
        assert row["label"] == parent["label"] and row["source"].startswith(f"augment:{method}:")
    assert stats[f"0:{method}"]["added"] == len(new) <= len(ROWS)


def test_token_edits_and_entity_swap_do_what_they_say():
    rng = random.Random(0)
    swap = METHODS.get("token_swap")
    out = swap.transform(ROWS[0], None, parse_entries(["token_swap"], "text_classification", "x")[0].options, rng)
    assert sorted(out["text"].split()) == sorted(ROWS[0]["text"].split()) and out["text"] != ROWS[0]["text"]
    delete = parse_entries([{"method": "token_delete", "p": 0.3}], "text_classification", "x")[0]
    out = METHODS.get("token_delete").transform(ROWS[0], None, delete.options, rng)
    assert 2 <= len(out["text"].split()) < len(ROWS[0]["text"].split())
    entity = parse_entries([{"method": "entity_swap", "p": 1.0, "entities": False}], "text_classification", "x")[0]
    ctx = METHODS.get("entity_swap").prepare(ROWS, entity.options)
    out = METHODS.get("entity_swap").transform(ROWS[0], ctx, entity.options, rng)
    # only numbers change, each to a number of the same digit shape seen in the data
    before, after = ROWS[0]["text"].split(), out["text"].split()
    assert len(before) == len(after) and before != after
    for a, b in zip(before, after):
        if a != b:
            assert a.replace(".", "").isdigit() and b.replace(".", "").isdigit() and len(a.split(".")[0]) == len(b.split(".")[0])


def test_augmented_rows_never_equal_a_forbidden_text():
    rows = [{"text": "alpha beta", "label": "a", "source": "f:1"}, {"text": "gamma delta", "label": "a", "source": "f:2"}]
    forbidden = ["alpha beta gamma delta", "gamma delta alpha beta", "alpha beta alpha beta", "gamma delta gamma delta"]
    new, stats = augment_rows(rows, parse_entries([{"method": "concat", "factor": 3}], "text_classification", "x"), seed=0, forbidden=forbidden)
    assert new == [] and stats["0:concat"]["dropped_as_leak"] > 0


def _toy_splits(toy_task, *overrides):
    return build_splits(build_run_config(str(toy_task), "full", list(overrides)).data)


def test_augment_block_adds_rows_to_train_only(toy_task):
    plain, _ = _toy_splits(toy_task)
    aug, stats = _toy_splits(toy_task, "data.augment=[{method: token_swap, factor: 1.0}, {method: concat, factor: 0.5}]")
    assert aug["validation"] == plain["validation"] and aug["test"] == plain["test"]
    added = sum(v["added"] for v in stats["augment"].values())
    assert added > len(plain["train"]) and len(aug["train"]) == len(plain["train"]) + added
    assert aug["train"][: len(plain["train"])] == plain["train"]
    held_out = {normalise(r["text"]) for s in ("validation", "test") for r in plain[s]}
    assert not any(normalise(r["text"]) in held_out for r in aug["train"][len(plain["train"]):])


def test_training_with_augment_and_class_balanced_sampler(toy_task, isolated):
    from mmsft.pipeline import train

    run = train(build_run_config(str(toy_task), "frozen", ["data.augment=[{method: token_delete}]", "train.sampler=class_balanced",
                                                           "train.epochs=2"]), isolated / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["train"] == 2 * 72  # 60% of 120 rows, plus one augmented row each
    assert "augment" in (run / "config.yaml").read_text()


@pytest.mark.parametrize("augment, expected", [
    ("[{method: tokn_swap}]", "data.augment[0].method: unknown augmentation method 'tokn_swap'. Did you mean 'token_swap'?"),
    ("[{method: image_boxes}]", "augmentation method 'image_boxes' does not fit a text_classification task"),
    ("[{method: token_swap, q: 0.1}]", "data.augment[0].q: unknown key 'q'"),
    ("[{method: token_swap, p: 2}]", "p must be in (0, 1]"),
    ("[{method: concat, factor: -1}]", "factor must be a positive number"),
    ("[{factor: 1}]", "each augment item needs a 'method'"),
])
def test_bad_augment_block_exits_2_before_training(toy_task, isolated, capsys, augment, expected):
    code = main(["train", str(toy_task), "--adapter", "frozen", f"data.augment={augment}"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert err.count("\n") == 1
    assert not (isolated / "runs").exists()


def test_data_augment_cli_materialises_a_trainable_copy(toy_task, isolated, capsys):
    out = isolated / "aug"
    assert main(["data", "augment", str(toy_task), "--method", "token_insert", "--out", str(out), "--factor", "2", "p=0.2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    lines = {name: [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()] for name in ("train", "validation", "test")}
    plain, _ = _toy_splits(toy_task)
    assert len(lines["train"]) == len(plain["train"]) * 3 == printed["rows"]["train"]
    assert sum(1 for r in lines["train"] if r.get("augmented") == "token_insert") == 2 * len(plain["train"])
    assert [r["text"] for r in lines["test"]] == [r["text"] for r in plain["test"]]
    cfg = build_run_config(str(out / "task.yaml"), "full")  # the copy is a valid task on its own
    again, _ = build_splits(cfg.data)
    assert len(again["train"]) == len(lines["train"]) and len(again["test"]) == len(plain["test"])
    assert (out / "task.yaml").read_text().startswith("# mmsft train ")


@pytest.mark.parametrize("argv, expected", [
    (["--method", "nope"], "unknown augmentation method 'nope'"),
    (["--method", "image_boxes"], "does not fit a text_classification task"),
    (["--method", "token_swap", "bogus=1"], "unknown key 'bogus'"),
    (["--method", "token_swap", "--factor", "0"], "factor must be a positive number"),
])
def test_data_augment_bad_input_exits_2_and_writes_nothing(toy_task, isolated, capsys, argv, expected):
    out = isolated / "aug"
    code = main(["data", "augment", str(toy_task), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert not out.exists() and not Path(str(out) + ".tmp").exists()


@pytest.mark.skipif(not (SHARED_DATA / "vehicles_openimages").is_dir(), reason="shared data not available")
def test_image_boxes_reuses_the_detection_transforms(tmp_path):
    import torch

    from mmsft.augment.image import BoxOptions
    from mmsft.vision import load_yolo

    sample = load_yolo(SHARED_DATA / "vehicles_openimages" / "data.yaml", "train").samples[0]
    row = {"image": str(sample.image_path), "boxes": sample.boxes.tolist(), "labels": sample.labels, "width": sample.width, "height": sample.height}
    out = METHODS.get("image_boxes").transform(row, None, BoxOptions(hflip=1.0, iou_crop=0.0, color_jitter=False), random.Random(0))
    assert out["pixels"].dtype == torch.uint8 and tuple(out["pixels"].shape) == (3, sample.height, sample.width)
    flipped = torch.tensor(out["boxes"])
    expected = torch.stack([sample.width - sample.boxes[:, 2], sample.boxes[:, 1], sample.width - sample.boxes[:, 0], sample.boxes[:, 3]], 1)
    assert torch.allclose(flipped, expected, atol=1.0) and out["labels"] == sample.labels


# -- balanced sampling --------------------------------------------------------------------------
def test_class_balanced_batches_are_balanced_deterministic_and_complete_in_count():
    groups = [0] * 900 + [1] * 90 + [2] * 10  # 90 : 9 : 1
    lengths = [(i * 7) % 30 + 1 for i in range(len(groups))]
    a = epoch_batches(lengths, 16, seed=1, epoch=0, groups=groups)
    assert a == epoch_batches(lengths, 16, seed=1, epoch=0, groups=groups)
    assert a != epoch_batches(lengths, 16, seed=1, epoch=1, groups=groups)
    drawn = [i for batch in a for i in batch]
    assert len(drawn) == len(groups)
    per_group = Counter(groups[i] for i in drawn)
    assert max(per_group.values()) - min(per_group.values()) <= 1  # 334 / 333 / 333
    assert len({i for i in drawn if groups[i] == 2}) == 10  # the small class is cycled through, every member used
    assert epoch_batches(lengths, 16, seed=1, epoch=0) == epoch_batches(lengths, 16, seed=1, epoch=0, groups=None)


def test_balanced_sampler_resumes_mid_epoch_exactly():
    groups = [i % 3 == 0 for i in range(200)]
    lengths = [5] * 200
    full = ResumableBatchSampler(lengths, 8, seed=3, groups=groups)
    full.set_epoch(2)
    resumed = ResumableBatchSampler(lengths, 8, seed=3, groups=groups)
    resumed.set_epoch(2, skip=7)
    assert list(resumed) == list(full)[7:] and len(resumed) == len(full) - 7


def test_sampler_option_is_validated(toy_task, isolated, capsys):
    code = main(["train", str(toy_task), "--adapter", "frozen", "train.sampler=balanced"])
    assert code == 2 and "train.sampler: invalid value 'balanced'" in capsys.readouterr().err


def test_cluster_balanced_sampler_groups_by_embedding_clusters(toy_task, isolated):
    from mmsft.pipeline import build_session, train

    cfg = build_run_config(str(toy_task), "frozen", ["train.sampler=cluster_balanced", "train.epochs=1"])
    groups = build_session(cfg).prepared.groups
    assert len(groups["cluster"]) == len(groups["class"]) == 72 and len(set(groups["cluster"])) == 6  # k = sqrt(72 / 2)
    run = train(cfg, isolated / "run")
    assert json.loads((run / "metrics.json").read_text())["steps"] > 0


def test_data_methods_lists_methods_with_their_kinds(capsys):
    assert main(["data", "methods"]) == 0
    out = capsys.readouterr().out
    for name in TEXT_METHODS:
        assert re.search(rf"^{name}\s+text_classification\s", out, re.M), name
    assert re.search(r"^image_boxes\s+detection\s", out, re.M)
