"""Every bad-input case stops before training: one message with file and row, exit 2, no run folder."""
import textwrap
from pathlib import Path

import pytest

from mmsft.cli.main import main


def _task(tmp_path: Path, tiny_bert: Path, csv_text: bytes | None, **data_overrides) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if csv_text is not None:
        (data / "d.csv").write_bytes(csv_text)
    block = {"format": "csv", "root": str(data), "files": "{all: d.csv}", "labels": "[neg, pos]", **data_overrides}
    lines = "\n".join(f"  {k}: {v}" for k, v in block.items())
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nkind: text_classification\ndata:\n{lines}\nmodel: {{backbone: {tiny_bert}}}\n")
    return path


GOOD_ROWS = "".join(f"row {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30))


@pytest.mark.parametrize("content, overrides, expected", [
    (None, {}, "d.csv: data file not found"),
    (b"", {}, "d.csv: data file is empty"),
    (b"text,label\n", {}, "header but no rows"),
    (("text,category\n" + GOOD_ROWS).encode(), {}, "d.csv:1: missing label column 'label'"),
    (("text,label\n" + GOOD_ROWS + "oops,maybe\n").encode(), {}, "d.csv:32: label 'maybe' is not in the label list"),
    (("text,label\n" + GOOD_ROWS + "caf\xe9,pos\n").encode("latin-1"), {}, "d.csv:32: cannot decode byte 0xe9 as utf-8"),
    (("text,label\n" + GOOD_ROWS + "a,b,c\n").encode(), {}, "d.csv:32: row has 3 fields"),
    (("text,label\n" + GOOD_ROWS).encode(), {"format": "xlsx"}, "data.format: unknown data format 'xlsx'"),
])
def test_bad_data_exits_2_without_run_folder(tmp_path, tiny_bert, isolated, capsys, content, overrides, expected):
    task = _task(tmp_path, tiny_bert, content, **overrides)
    code = main(["train", str(task), "--adapter", "full"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert err.count("\n") == 1  # one message, no traceback
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


@pytest.mark.parametrize("argv, expected", [
    (["train", "no_such_task"], "unknown task 'no_such_task'"),
    (["train", "finance_sentiment", "--adapter", "nope"], "unknown adapter 'nope'"),
    (["train", "finance_sentiment", "model.backbone=not-a-model"], "backbone 'not-a-model' is neither a zoo entry"),
    (["train", "finance_sentiment", "train.lr"], "bad override 'train.lr' (expected key.path=value)"),
    (["train", "finance_sentiment", "--adapter", "lora", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "finance_sentiment", "train..lr=3"], "expected key.path=value"),
])
def test_bad_names_and_overrides_exit_2(isolated, capsys, argv, expected):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (isolated / "runs").exists()
