"""Bulk prediction (`mmsft predict RUN --input FILE --output preds.jsonl`): ids kept, one line per input,
the same labels as predicting the texts one call at a time, bad input lines named, nothing half-written."""
from __future__ import annotations

import json

from mmsft.cli.main import main


def test_bulk_jsonl_keeps_ids_and_matches_single_predictions(toy_task, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(toy_task), "--output", str(run), "train.epochs=1"]) == 0
    texts = ["a good result", "a bad result", "fine"]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" + ("\n" if i == 0 else "") for i, t in enumerate(texts)))
    out = tmp_path / "preds.jsonl"
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    capsys.readouterr()
    assert main(["predict", str(run), *texts]) == 0
    single = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in rows] == [r["label"] for r in single]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n[1, 2]\n')
    out_bad = tmp_path / "bad_preds.jsonl"
    assert main(["predict", str(run), "--input", str(bad), "--output", str(out_bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2: a line must be a JSON object, not a JSON array" in err
    assert not out_bad.exists()
