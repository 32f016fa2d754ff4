"""Tables from the Hugging Face ecosystem as task data (``data.format: hf | parquet``, generation ``tsv``).

Each format is read back to the same rows as the CSV it was made from; every bad table is one
``UserError`` naming the file (and row) -- exit 2 through the CLI, no run folder.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import write_toy_csv, write_toy_task
from mmsft.data.readers import READERS
from mmsft.errors import UserError

datasets = pytest.importorskip("datasets")


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _toy_table(tmp_path: Path, n: int = 40):
    """The toy CSV and the same rows as a ``datasets.Dataset`` (label as a ClassLabel)."""
    rows = _csv_rows(write_toy_csv(tmp_path / "toy.csv", n=n))
    return rows, _dataset(rows)


def _dataset(rows: list[dict]):
    """CSV rows as a ``datasets.Dataset``, the label a ClassLabel (read back as its names)."""
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    return datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}, features=features)


def _read(fmt: str, path, **opts) -> list[dict]:
    opts = {"encoding": "utf-8", "text_column": "text", "label_column": "label", **opts}
    return READERS.get(fmt)(path, **opts)


def _pairs(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["text"], r["label"]) for r in rows]


@pytest.mark.parametrize("layout", ["parquet", "saved_folder", "saved_dict_split", "arrow", "jsonl", "parquet_folder"])
def test_every_table_layout_reads_the_csv_rows(tmp_path, layout):
    rows, ds = _toy_table(tmp_path)
    expected = [(r["text"], r["label"]) for r in rows]
    if layout == "parquet":
        ds.to_parquet(str(tmp_path / "t.parquet"))
        ref = tmp_path / "t.parquet"
    elif layout == "saved_folder":
        ds.save_to_disk(str(tmp_path / "saved"))
        ref = tmp_path / "saved"
    elif layout == "saved_dict_split":  # a DatasetDict folder, one split named as folder/<split>
        datasets.DatasetDict({"train": ds, "test": ds.select(range(5))}).save_to_disk(str(tmp_path / "dd"))
        ref = tmp_path / "dd" / "train"
    elif layout == "arrow":
        ds.save_to_disk(str(tmp_path / "saved"))
        ref = next((tmp_path / "saved").glob("*.arrow"))
    elif layout == "jsonl":
        (tmp_path / "t.jsonl").write_text("".join(f'{{"text": {t!r}, "label": "{l}"}}\n'.replace("'", '"') for t, l in expected))
        ref = tmp_path / "t.jsonl"
    else:  # a folder of parquet shards, read in name order
        (tmp_path / "shards").mkdir()
        ds.select(range(20)).to_parquet(str(tmp_path / "shards" / "a.parquet"))
        ds.select(range(20, len(ds))).to_parquet(str(tmp_path / "shards" / "b.parquet"))
        ref = tmp_path / "shards"
    got = _read("hf", ref)
    assert _pairs(got) == expected  # ClassLabel ids come back as their names
    assert got[0]["source"].endswith(":1") and got[-1]["source"].endswith(f":{len(expected)}")
    if layout == "parquet":
        assert _pairs(_read("parquet", ref)) == expected


def test_dict_folder_without_a_split_lists_its_splits(tmp_path):
    _, ds = _toy_table(tmp_path)
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError) as err:
        _read("hf", tmp_path / "dd")
    assert "splits train, test" in str(err.value) and "dd/<split>" in str(err.value)


def test_columns_are_mapped_as_for_csv(tmp_path):
    rows, _ = _toy_table(tmp_path)
    ds = datasets.Dataset.from_dict({"sentence": [r["text"] for r in rows], "sentiment": [r["label"] for r in rows]})
    ds.to_parquet(str(tmp_path / "t.parquet"))
    got = _read("parquet", tmp_path / "t.parquet", text_column=["body", "sentence"], label_column="sentiment")
    assert _pairs(got) == [(r["text"], r["label"]) for r in rows]
    with pytest.raises(UserError) as err:
        _read("parquet", tmp_path / "t.parquet", text_column=["body", "content"], label_column="sentiment")
    assert "missing text column 'body' or 'content'" in str(err.value) and "sentence" in str(err.value)


@pytest.mark.parametrize("case, message", [
    ("damaged", "cannot read the table"),
    ("null_text", "t.parquet:3: 'text' is a null"),
    ("float_label", "t.parquet:1: 'label' is a float"),
    ("empty", "the table has no rows"),
    ("not_parquet", "not a .parquet file"),
    ("unknown_suffix", "cannot tell the table format of 't.xlsx'"),
    ("missing", "data file or folder not found"),
])
def test_bad_tables_name_the_file_and_row(tmp_path, case, message):
    fmt, ref = "parquet", tmp_path / "t.parquet"
    if case == "damaged":
        datasets.Dataset.from_dict({"text": ["a"] * 50, "label": ["pos"] * 50}).to_parquet(str(ref))
        ref.write_bytes(ref.read_bytes()[:-40])  # a truncated footer
    elif case == "null_text":
        datasets.Dataset.from_dict({"text": ["a", "b", None], "label": ["pos", "neg", "pos"]}).to_parquet(str(ref))
    elif case == "float_label":
        datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0.5, 1.0]}).to_parquet(str(ref))
    elif case == "empty":
        datasets.Dataset.from_dict({"text": [], "label": []}, features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.Value("string")})).to_parquet(str(ref))
    elif case == "not_parquet":
        ref = tmp_path / "t.jsonl"
        ref.write_text('{"text": "a", "label": "pos"}\n')
    elif case == "unknown_suffix":
        fmt, ref = "hf", tmp_path / "t.xlsx"
        ref.write_bytes(b"PK")
    with pytest.raises(UserError) as err:
        _read(fmt, ref)
    assert message in str(err.value), str(err.value)


def _table_task(folder: Path, backbone: Path, files: str) -> Path:
    """The toy task (60 rows, one epoch) reading ``data.format: hf`` from ``files`` under ``folder/data``."""
    return write_toy_task(folder, backbone, rows=60, train="epochs: 1, batch_size: 8, lr: 1.0e-3", data_format="hf", files=files)


@pytest.mark.parametrize("layout", ["toy.parquet", "saved"])
def test_table_task_splits_like_its_csv_trains_and_checks(tmp_path, tiny_bert, isolated, capsys, layout):
    from mmsft.cli.main import main
    from mmsft.kinds.text_classification.data import build_splits
    from mmsft.spec import build_run_config

    task = _table_task(tmp_path, tiny_bert, f"{{all: {layout}}}")
    data = tmp_path / "data"
    ds = _dataset(_csv_rows(data / "toy.csv"))
    ds.to_parquet(str(data / layout)) if layout.endswith(".parquet") else ds.save_to_disk(str(data / layout))
    (tmp_path / "c").mkdir()
    csv_task = write_toy_task(tmp_path / "c", tiny_bert, rows=60)  # the same rows as a CSV task
    from_table, _ = build_splits(build_run_config(str(task), "full").data)
    from_csv, _ = build_splits(build_run_config(str(csv_task), "full").data)
    assert {k: [(r["text"], r["label"]) for r in v] for k, v in from_table.items()} == \
           {k: [(r["text"], r["label"]) for r in v] for k, v in from_csv.items()}
    assert main(["data", "check", str(task), "--out", str(isolated / "check"), "--skip", "noise,diversity"]) in (0, 1)
    assert str(data / layout) in (isolated / "check" / "check.json").read_text()
    assert main(["train", str(task), "--adapter", "full", "--output", str(isolated / "run")]) == 0
    assert (isolated / "run" / "metrics.json").is_file()


def test_hub_dataset_offline_fails_fast(tmp_path, tiny_bert, isolated, capsys, monkeypatch):
    import mmsft.zoo.base as zoo_base
    from mmsft.cli.main import main

    monkeypatch.setattr(zoo_base, "hub_reachable", lambda *a, **k: False)
    task = _table_task(tmp_path, tiny_bert, "{all: 'hf:someone/finance-tweets'}")
    assert main(["train", str(task), "--adapter", "full"]) == 2
    err = capsys.readouterr().err
    assert "hub dataset 'someone/finance-tweets' needs the Hugging Face hub, which cannot be reached (offline)" in err
    assert err.count("\n") == 1
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


# -- generation pairs ---------------------------------------------------------------------------------------------
PAIRS = [("the cat sees the dog", "die Katze sieht den Hund", "animals"), ("a man has a house", "ein Mann hat ein Haus", "home"),
         ("the child likes the woman", "das Kind mag die Frau", "people")]


def _gen_spec(fmt: str, **kw):
    from mmsft.kinds.generation.data import GenerationData

    return GenerationData(format=fmt, files={"train": "x"}, **kw)


def _gen(fmt: str, root: Path, pattern: str, **kw) -> list[dict]:
    from mmsft.kinds.generation.readers import GEN_READERS

    return GEN_READERS.get(fmt)(root, pattern, _gen_spec(fmt, **kw))


def _as_tuples(rows):
    return [(r["messages"][0]["content"], r["messages"][1]["content"], r["fields"].get("topic")) for r in rows]


def test_tsv_with_and_without_header_read_as_the_csv_pairs(tmp_path):
    with (tmp_path / "p.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("source", "target", "topic"), *PAIRS])
    (tmp_path / "h.tsv").write_text("topic\ttarget\tsource\n" + "".join(f"{c}\t{t}\t{s}\n" for s, t, c in PAIRS))
    (tmp_path / "n.tsv").write_text("".join(f"{s}\t{t}\t{c}\r\n" for s, t, c in PAIRS) + "\n")
    reference = _as_tuples(_gen("csv", tmp_path, "p.csv", field_columns=["topic"]))
    assert reference == [tuple(p) for p in PAIRS]
    assert _as_tuples(_gen("tsv", tmp_path, "h.tsv", field_columns=["topic"])) == reference  # header: any column order
    without = _gen("tsv", tmp_path, "n.tsv", field_columns=["topic"])  # no header: source, target, fields
    assert _as_tuples(without) == reference and without[1]["source"] == "n.tsv:2"


@pytest.mark.parametrize("text, fields, message", [
    ("source\ttarget\n" + "a\tb\n" + "c\td\te\n", [], "w.tsv:3: row has 3 fields"),
    ("a\tb\n" + "just one field\n", [], "w.tsv:2: row has 1 fields"),
    ("a\tb\n", ["topic"], "w.tsv:1: row has 2 fields (expected at least 3 tab-separated: source, target, topic"),
    ("source\ttarget\n" + "a\t \n", [], "w.tsv:2: empty target"),
    ("source\ttarget\n" + "a\tb\n", ["topic"], "w.tsv:1: missing column(s) ['topic']"),
])
def test_bad_tsv_names_the_line(tmp_path, text, fields, message):
    (tmp_path / "w.tsv").write_text(text)
    with pytest.raises(UserError) as err:
        _gen("tsv", tmp_path, "w.tsv", field_columns=fields)
    assert message in str(err.value), str(err.value)


def test_table_pairs_equal_the_tsv_pairs(tmp_path):
    (tmp_path / "n.tsv").write_text("".join(f"{s}\t{t}\t{c}\n" for s, t, c in PAIRS))
    ds = datasets.Dataset.from_dict({"en": [p[0] for p in PAIRS], "de": [p[1] for p in PAIRS], "topic": [p[2] for p in PAIRS]})
    ds.to_parquet(str(tmp_path / "p.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    reference = _as_tuples(_gen("tsv", tmp_path, "n.tsv", field_columns=["topic"]))
    columns = {"source_column": "en", "target_column": "de", "field_columns": ["topic"]}
    assert _as_tuples(_gen("parquet", tmp_path, "p.parquet", **columns)) == reference
    assert _as_tuples(_gen("hf", tmp_path, "saved", **columns)) == reference
    assert _as_tuples(_gen("hf", tmp_path, "*.parquet", **columns)) == reference
    with pytest.raises(UserError, match="missing target column 'target'"):
        _gen("parquet", tmp_path, "p.parquet", source_column="en")
    with pytest.raises(UserError, match="not a .parquet file"):
        _gen("parquet", tmp_path, "n.tsv")
