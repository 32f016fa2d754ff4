"""`mmsft data check`: duplicates, leakage, conflicts, label noise, lengths, balance, diversity,
verdicts, --fix; the known facts of the shared data; bad input."""
import csv
import hashlib
import json
import random
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from mmsft.cli.main import main
from mmsft.dataqc import build_view, check_task, run_checks, write_report
from mmsft.kinds.detection import detection_view
from mmsft.dataqc import duplicates as dq
from mmsft.dataqc.diversity import dialogue_stats
from mmsft.spec import build_run_config

from conftest import SHARED_DATA, write_toy_csv

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data not available")


# -- a toy task with planted problems ------------------------------------------------------------
def _planted_task(tmp_path: Path, backbone: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_toy_csv(data / "train.csv", n=80, seed=1)
    write_toy_csv(data / "clean_test.csv", n=30, seed=2)
    train = (data / "train.csv").read_text().splitlines()
    test = (data / "clean_test.csv").read_text().splitlines()[1:]
    train += [train[1], train[1],  # 2 exact duplicates (same label)
              "the quarter results were mixed 999,pos", "the quarter results were mixed 999,neg",  # conflict
              '"its company, said results great!!! 1001",pos', "its company said results great 1001,pos"]  # near duplicate
    leaked = [train[5], train[9], train[13]]  # 3 train rows also in test
    test += leaked + [train[21].replace(" ", "  ").replace(",", " .,")]  # a near copy (extra spaces, a dot)
    (data / "train.csv").write_text("\n".join(train) + "\n")
    (data / "test.csv").write_text("\n".join(["text,label", *test]) + "\n")
    (data / "clean_test.csv").unlink()
    task = tmp_path / "planted.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: planted
        kind: text_classification
        data:
          format: csv
          root: {data}
          files: {{train: train.csv, test: test.csv}}
          labels: [neg, pos]
          split: {{train: 0.9, validation: 0.1, test: 0.0, seed: 1}}
        model: {{backbone: {backbone}, max_length: 8}}
        """))
    return task


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_check_finds_planted_problems_and_fix_cleans_them(tmp_path, tiny_bert, isolated):
    task = _planted_task(tmp_path, tiny_bert)
    before = _digest(tmp_path / "data")
    out, results = check_task(build_run_config(str(task)), tmp_path / "report", fix_out=tmp_path / "fixed")
    report = json.loads((out / "check.json").read_text())
    dup = report["duplicates"]

    assert report["verdicts"][0]["key"] == "leakage" and report["verdicts"][0]["severity"] == "critical"
    assert sum(v["rows"] for k, v in dup["leakage"]["exact"].items() if k.endswith("->test")) == 3
    assert sum(v["rows"] for k, v in dup["leakage"]["exact_or_near"].items() if k.endswith("->test")) == 4
    assert dup["exact"]["by_file_key"]["train"]["duplicate_rows"] == 3  # 2 copies + the conflicting pair
    assert dup["conflicts"]["exact"]["groups"] == 1 and dup["conflicts"]["exact"]["rows"] == 2
    near_texts = [e["text"] for e in dup["near"]["examples"]]
    assert any("1001" in t for t in near_texts)
    titles = [v["title"] for v in report["verdicts"]]
    assert any(t.startswith("Conflicting labels: 1 inputs") for t in titles)
    assert any(t.startswith("Truncation") for t in titles)  # max_length 8 cuts most rows
    assert report["lengths"]["by_split"]["train"]["truncated_share"] > 0.5
    assert report["balance"]["by_split"]["test"] == {"neg": 19, "pos": 15}
    assert report["noise"]["scored_rows"] == 86 and "listed" in report["noise"]
    assert report["diversity"]["text"]["by_split"]["train"]["distinct_1"] > 0
    assert {"report.md", "check.json", "class_balance.png", "lengths.png"} <= {p.name for p in out.iterdir()}
    md = (out / "report.md").read_text()
    assert md.index("## Verdicts") < md.index("## Leakage") < md.index("## Duplicates") < md.index("## Label-noise")

    # --fix: a cleaned copy, the source untouched, and the copy checks clean
    assert _digest(tmp_path / "data") == before
    fix = json.loads((tmp_path / "fixed" / "fix.json").read_text())
    assert fix["removed"] == {"leakage": 4, "duplicate": 3, "conflict without majority": 2}
    assert fix["per_files_key"]["test"]["in"] == fix["per_files_key"]["test"]["out"] == 34  # test rows are never dropped
    _, again = check_task(build_run_config(str(tmp_path / "fixed" / "task.yaml"), None, [f"model.backbone={tiny_bert}"]),
                          tmp_path / "report2", skip=["noise", "diversity"])
    assert all(v["rows"] == 0 for v in again["duplicates"]["leakage"]["exact_or_near"].values())
    assert again["duplicates"]["exact"]["groups"] == 0 and again["duplicates"]["conflicts"]["exact"]["groups"] == 0


def test_fix_refuses_a_non_empty_target_before_writing_anything(tmp_path, tiny_bert, isolated, capsys):
    task = _planted_task(tmp_path, tiny_bert)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    code = main(["data", "check", str(task), "--fix", str(target), "--skip", "noise,diversity"])
    assert code == 2 and "--fix output exists and is not an empty folder" in capsys.readouterr().err
    assert not (isolated / "runs").exists() and [p.name for p in target.iterdir()] == ["keep.txt"]


def test_report_folder_with_other_content_is_refused(tmp_path, tiny_bert, isolated, capsys):
    task = _planted_task(tmp_path, tiny_bert)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code = main(["data", "check", str(task), "--out", str(other), "--skip", "noise,diversity"])
    assert code == 2 and "report folder exists and is not an earlier data-check report" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert main(["data", "check", str(task), "--skip", "duplicates", "--fix", str(tmp_path / "f")]) == 2
    assert "--fix needs the duplicates section" in capsys.readouterr().err


def _bad_task(tmp_path: Path, content: bytes | None, name: str = "d.csv") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if content is not None:
        (data / name).write_bytes(content)
    task = tmp_path / "bad.yaml"
    task.write_text(f"name: bad\nkind: text_classification\ndata:\n  format: csv\n  root: {data}\n"
                    f"  files: {{all: {name}}}\n  labels: [neg, pos]\n")
    return task


ROWS = "".join(f"row {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30))


@pytest.mark.parametrize("content, argv, expected", [
    (None, [], "d.csv: data file not found"),
    (b"", [], "d.csv: data file is empty"),
    (b"text,label\n", [], "d.csv: data file has a header but no rows"),
    (("text,label\n" + ROWS + "a,b,c\n").encode(), [], "d.csv:32: row has 3 fields"),
    (("text,label\n" + ROWS + "caf\xe9,pos\n").encode("latin-1"), [], "d.csv:32: cannot decode byte 0xe9 as utf-8"),
    (("text,label\n" + ROWS + "x,maybe\n").encode(), [], "d.csv:32: label 'maybe' is not in the label list"),
    (("text,label\n" + ROWS).encode(), ["--skip", "noize"], "--skip: unknown check section 'noize'. Did you mean 'noise'?"),
])
def test_bad_input_exits_2_with_file_and_line(tmp_path, isolated, capsys, content, argv, expected):
    code = main(["data", "check", str(_bad_task(tmp_path, content)), *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert err.count("\n") == 1
    assert not (isolated / "runs").exists()


def test_data_commands_have_help(capsys):
    for argv in (["data", "--help"], ["data", "check", "--help"], ["data", "augment", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--fix OUT" in out and "--method METHOD" in out and "label-noise" in out


def test_unknown_task_and_missing_action(isolated, capsys):
    assert main(["data", "check", "no_such_task"]) == 2
    assert "unknown task 'no_such_task'" in capsys.readouterr().err
    assert main(["data"]) == 2


# -- the known facts of the shared data ----------------------------------------------------------
@needs_data
def test_sst2_train_duplicates_match_source_md():
    stated = re.search(r"i\.e\. ([\d,]+) duplicate rows", (SHARED_DATA / "sst2" / "SOURCE.md").read_text())
    data = build_view(build_run_config("sst2_sentiment"))
    found = dq.analyse(data, near=False)
    assert found["exact"]["by_file_key"]["train"]["duplicate_rows"] == int(stated.group(1).replace(",", "")) == 371
    # SOURCE.md: "0 dev sentences and 1 test sentence occur verbatim in train"
    assert found["leakage"]["exact"]["train->validation"]["rows"] == 0
    assert found["leakage"]["exact"]["train->test"]["rows"] == 1


@needs_data
def test_medical_abstracts_twice_with_different_labels():
    data = build_view(build_run_config("medical_abstracts"))
    found = dq.analyse(data, near=False)
    conflicts = found["conflicts"]["exact"]
    assert conflicts["groups"] == 113  # SOURCE.md: 113 abstracts appear twice with DIFFERENT labels
    assert found["exact"]["by_file_key"]["all"]["duplicate_rows"] == 118  # (118 extra rows)
    assert all(it.split == "dropped" for ids in conflicts["_ids"] for it in (data.items[i] for i in ids))  # drop_conflicts


@needs_data
def test_phrasebank_agreement_files_are_flagged_as_leaking(tmp_path, isolated, capsys):
    task = tmp_path / "nested.yaml"
    task.write_text(textwrap.dedent("""\
        name: phrasebank_nested
        kind: text_classification
        data:
          format: phrasebank
          files: {train: financial_phrasebank/Sentences_50Agree.txt, test: financial_phrasebank/Sentences_AllAgree.txt}
          encoding: latin-1
          labels: [negative, neutral, positive]
        """))
    assert main(["data", "check", str(task), "--skip", "noise,diversity,lengths", "--out", str(tmp_path / "r")]) == 0
    assert "[critical] Nested files: Sentences_AllAgree.txt (test) is a subset of Sentences_50Agree.txt (train)" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "check.json").read_text())
    first = report["verdicts"][0]
    assert first["severity"] == "critical" and first["key"] == "leakage"
    assert report["duplicates"]["leakage"]["exact"]["train->test"]["share"] > 0.8
    overlap = report["duplicates"]["file_overlap"][0]
    assert overlap["subset"] == "Sentences_AllAgree.txt" and overlap["share_of_b"] > 0.95


@needs_data
def test_finance_sentiment_dedupes_before_splitting_so_no_exact_leakage():
    data = build_view(build_run_config("finance_sentiment"))
    found = dq.analyse(data)
    assert all(v["rows"] == 0 for v in found["leakage"]["exact"].values())
    assert found["conflicts"]["exact"]["groups"] == data.cleaning["conflicting_texts"] == 2
    assert found["exact"]["by_file_key"]["all"]["duplicate_rows"] == 4846 - 4838  # SOURCE.md: 4,838 unique sentences


@needs_data
def test_detection_check_on_vehicles_and_yolo_fix(tmp_path):
    from mmsft.vision import load_yolo

    yaml_path = SHARED_DATA / "vehicles_openimages" / "data.yaml"
    sets = {name: load_yolo(yaml_path, split) for name, split in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    data = detection_view("vehicles", sets)
    results = run_checks(data, ["duplicates", "balance", "diversity"])
    det = results["detection"]
    assert (det["train"]["images"], det["train"]["boxes"]) == (439, 838)  # SOURCE.md counts
    assert results["balance"]["by_split"]["test"] == {"Ambulance": 9, "Bus": 19, "Car": 75, "Motorcycle": 16, "Truck": 10}
    assert all(v["rows"] == 0 for v in results["duplicates"]["leakage"]["exact"].values())  # no image crosses splits
    out = write_report(data, results, tmp_path / "report")
    assert (out / "boxes.png").is_file() and "## Detection" in (out / "report.md").read_text()

    # plant a leak (a train image also in test) in a small subset; --fix drops it from train, writes YOLO
    small = {k: type(v)(v.samples[:12], v.class_names) for k, v in sets.items()}
    small["test"].samples.append(small["train"].samples[0])
    data = detection_view("vehicles_small", small)
    results = run_checks(data, ["duplicates"])
    assert results["duplicates"]["leakage"]["exact"]["train->test"]["rows"] == 1
    from mmsft.dataqc.fix import write_fixed

    fixed = write_fixed(None, data, results, tmp_path / "fixed")
    back = load_yolo(fixed / "data.yaml", "train")
    assert len(back.samples) == 11 and back.num_boxes == sum(len(s.labels) for s in small["train"].samples[1:])
    assert len(load_yolo(fixed / "data.yaml", "test").samples) == 13


# -- label noise: 5% of BANKING77's train labels flipped ------------------------------------------
@pytest.fixture(scope="session")
def flipped_banking(tmp_path_factory):
    """A copy of banking77 with 5% of the train labels flipped (seeded), and the full check on it.
    The embeddings are cached under the normal cache (keyed by the texts): one pass per machine."""
    root = tmp_path_factory.mktemp("flipped")
    folder = root / "banking77"
    folder.mkdir()
    rows = list(csv.reader(open(SHARED_DATA / "banking77" / "train.csv", newline="", encoding="utf-8")))
    header, body = rows[0], rows[1:]
    labels = sorted({r[1] for r in body})
    rng = random.Random(0)
    flipped = set(rng.sample(range(len(body)), round(0.05 * len(body))))
    original = {i: body[i][1] for i in flipped}
    for i in flipped:
        body[i][1] = rng.choice([lab for lab in labels if lab != body[i][1]])
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *body])
    shutil.copy(SHARED_DATA / "banking77" / "test.csv", folder / "test.csv")
    cfg = build_run_config("banking77_intent", None, [f"data.root={root}"])
    out, results = check_task(cfg, root / "report")
    return {"results": results, "flipped": flipped, "original": original, "out": out, "body": body}


@needs_data
@pytest.mark.slow
def test_label_noise_finder_ranks_flipped_rows(flipped_banking):
    results, flipped = flipped_banking["results"], flipped_banking["flipped"]
    noise = results["noise"]
    items = {it_id: row for it_id, row in enumerate(flipped_banking["body"])}  # train file rows are the first items
    assert len(items) == noise["scored_rows"]
    top = noise["_ranked_ids"]
    hits = [i for i in top if i in flipped]
    recall, precision = len(hits) / len(flipped), len(hits) / len(top)
    assert recall >= 0.6 and precision >= 0.5, (recall, precision, len(top))
    listed = {s["id"]: s for s in noise["listed"]}
    right = sum(1 for i in hits if listed[i]["suspected_label"] == flipped_banking["original"][i])
    assert right >= 0.8 * len(hits)  # the suspected true label is mostly the original one


@needs_data
@pytest.mark.slow
def test_full_check_report_on_banking(flipped_banking):
    out = flipped_banking["out"]
    report = json.loads((out / "check.json").read_text())
    assert report["verdicts"][0]["severity"] in ("critical", "high")
    assert any(v["key"] == "noise" and v["severity"] == "high" for v in report["verdicts"])
    emb = report["diversity"]["embedding"]
    assert emb["clusters"] == 50 and len(emb["by_class"]) == 77
    assert report["lengths"]["tokenizer"] == "minilm-l6" and report["lengths"]["max_length"] == 64
    md = (out / "report.md").read_text()
    assert "## Label-noise suspects" in md and "## Diversity" in md


def test_image_classification_leak_found_by_image_hash_and_fixed(tmp_path, isolated):
    from PIL import Image

    root = tmp_path / "imgs"
    rng = random.Random(0)
    for split, n in (("train", 6), ("test", 3)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                Image.frombytes("RGB", (32, 32), bytes(rng.randrange(256) for _ in range(32 * 32 * 3))).save(folder / f"{split}{i}.png")
    shutil.copy(root / "train" / "cat" / "train0.png", root / "test" / "cat" / "leak.png")  # same bytes in train and test
    task = tmp_path / "img.yaml"
    task.write_text(f"name: img\nkind: image_classification\ndata:\n  source: imgs\n  root: {tmp_path}\n"
                    "  splits: {train: train, test: test}\nmodel: {backbone: mobilenet-v2}\nmetrics: [accuracy]\n")
    out, results = check_task(build_run_config(str(task)), tmp_path / "report", fix_out=tmp_path / "fixed")
    leaks = results["duplicates"]["leakage"]["exact"]
    assert sum(v["rows"] for k, v in leaks.items() if k.endswith("->test")) == 1
    assert json.loads((out / "check.json").read_text())["verdicts"][0]["key"] == "leakage"
    assert results["balance"]["by_split"]["test"] == {"cat": 4, "dog": 3}
    assert sorted(p.name for p in (tmp_path / "fixed" / "train" / "cat").iterdir()) == [f"train{i}.png" for i in range(1, 6)]
    assert (tmp_path / "fixed" / "test" / "cat" / "leak.png").is_file() and (tmp_path / "fixed" / "task.yaml").is_file()


@needs_data
def test_generation_view_counts_intents_and_turns(isolated, tmp_path):
    data = build_view(build_run_config("customer_service_reply"))
    results = run_checks(data, ["duplicates", "balance"])
    dialogue = dialogue_stats(data)
    assert dialogue["dialogues"] == 4514 and dialogue["distinct_intents"] == 27 and dialogue["turns_max"] == 2  # SOURCE.md: 27 intents
    assert results["balance"]["by_file_key"]["all"]["cancel_order"] == 139 and results["balance"]["by_file_key"]["all"]["delivery_period"] == 204
    assert results["duplicates"]["exact"]["by_file_key"]["all"]["duplicate_rows"] > 0  # case-only variants of the same request
