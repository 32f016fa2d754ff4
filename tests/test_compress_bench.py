"""benchmarks/compress.py on a new machine: a committed report seeds the stages not being redone, marked carried,
never over a stage computed here, and the report says which rows were carried and when."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from compress import carried_line, carry_stages, sitting_line  # noqa: E402


def test_committed_stages_seed_missing_ones_only_and_are_named_in_the_report(tmp_path):
    report = tmp_path / "compress.json"
    old = {"measure": {"accuracy": 0.9}, "measured_at": "2026-12-04 20:32 UTC"}
    report.write_text(json.dumps({"stages": {"banking77_intent:teacher": old, "finance_sentiment:teacher": old}}))
    path = lambda n: tmp_path / "stages" / f"{n.replace(':', '-')}.json"  # noqa: E731
    path("banking77_intent:teacher").parent.mkdir()
    path("banking77_intent:teacher").write_text(json.dumps({"measure": {"accuracy": 0.5}, "measured_at": "2026-12-07 11:00 UTC"}))

    settings = {"soup_init_seed": 42}
    seeded = carry_stages(report, ["banking77_intent:teacher", "finance_sentiment:teacher", "ties"], path, settings)
    assert seeded == ["finance_sentiment:teacher"]  # the stage computed here stays; 'ties' is not in the report
    carried = json.loads(path("finance_sentiment:teacher").read_text())
    assert carried["settings"] == settings and carried["carried"] == str(report) and carried["measure"]["accuracy"] == 0.9
    assert json.loads(path("banking77_intent:teacher").read_text())["measure"]["accuracy"] == 0.5

    results = {n: json.loads(path(n).read_text()) for n in ("banking77_intent:teacher", "finance_sentiment:teacher")}
    line = " ".join(carried_line(results))
    assert "`finance_sentiment:teacher`" in line and "2026-12-04 20:32 UTC" in line and "banking77" not in line
    # the sitting line speaks of the stages measured here only
    assert sitting_line(results) == sitting_line({"banking77_intent:teacher": results["banking77_intent:teacher"]})
    assert carried_line({"banking77_intent:teacher": results["banking77_intent:teacher"]}) == []


def test_generation_stages_train_the_translation_task_not_a_classification_teacher(tmp_path, monkeypatch):
    import compress

    calls = []
    monkeypatch.setattr(compress, "mmsft", lambda *args: calls.append(args))
    compress.run_stage("gen:teacher", tmp_path, False, ["train.mixed_precision=bf16"])
    compress.run_stage("gen:references", tmp_path, False, [])
    assert calls[0][:2] == ("train", "translation_en_de") and "model.backbone=gemma3-270m" in calls[0]
    assert "train.mixed_precision=bf16" in calls[0]
    assert calls[1][:2] == ("train", "translation_en_de") and "model.backbone=smollm2-135m" in calls[1]
