"""benchmarks/knowledge.py resume helpers: a committed report seeds missing stages, never overwrites saved ones."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from knowledge import carried_over, seed_stages, staged_costs  # noqa: E402


def _cell(seed: int, accuracy: float) -> dict:
    return {"task": "finance_sentiment", "module": "none", "fraction": 0.1, "seed": seed, "accuracy": accuracy, "f1_macro": accuracy}


def test_report_seeds_missing_stages_only(tmp_path):
    report = tmp_path / "knowledge.json"
    costs = [{"task": "finance_sentiment", "module": "retrieved_segments", "ms_per_query": 1.5}]
    report.write_text(json.dumps({"rows": [], "runs": [_cell(0, 0.7), _cell(1, 0.8)], "costs": costs}))
    stages = tmp_path / "stages"
    stages.mkdir()
    kept = stages / "cls-finance_sentiment-none-0.1-1.json"
    kept.write_text(json.dumps(_cell(1, 0.9)))  # computed here: the report must not replace it

    assert seed_stages(report, stages) == 1
    assert json.loads((stages / "cls-finance_sentiment-none-0.1-0.json").read_text())["accuracy"] == 0.7
    assert json.loads(kept.read_text())["accuracy"] == 0.9
    # the seeded cost stage is reused for the same tasks, so no index is rebuilt
    assert staged_costs(["finance_sentiment"], False, stages, fresh=False) == costs
    assert seed_stages(report, stages) == 0
    assert carried_over(stages) == {"from": str(report), "cells": 1, "costs": True}  # the report can still say so later
