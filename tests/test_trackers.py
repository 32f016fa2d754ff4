"""Experiment trackers (``train.report_to``): what TensorBoard / MLflow / the JSONL tracker hold, read back
with their own readers, equals ``metrics.jsonl`` (same scalars, same step numbers)."""
from __future__ import annotations

import json
import math

import pytest

from mmsft.pipeline import train
from mmsft.spec import build_run_config


def _log(run_dir) -> tuple[list[dict], list[dict]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["type"] == "train"], [r for r in records if r["type"] == "eval"]


def _expected(run_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} the trackers should show, from metrics.jsonl."""
    trains, evals = _log(run_dir)
    out: dict[str, list[tuple[int, float]]] = {}
    for prefix, records, skip in (("train", trains, ()), ("eval", evals, ("epoch",))):
        for r in records:
            for key, value in r.items():
                if key not in ("type", "step", *skip) and isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(f"{prefix}/{key}", []).append((r["step"], float(value)))
    return out


def _same(got: dict, want: dict) -> None:
    for tag, points in want.items():
        assert tag in got, (tag, sorted(got))
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        for (_, a), (_, b) in zip(got[tag], points):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7), (tag, a, b)  # TensorBoard stores float32


@pytest.fixture
def tracked(toy_task, isolated):
    overrides = ["train.report_to=[tensorboard, jsonl]", "train.epochs=2", "train.log_every_steps=2"]
    return train(build_run_config(str(toy_task), "lora", overrides), isolated / "run")


def test_tensorboard_events_match_metrics_jsonl(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trains, evals = _log(tracked)
    assert len(trains) >= 4 and len(evals) == 2  # a validation per epoch
    files = sorted((tracked / "tensorboard").rglob("events.out.tfevents.*"))
    assert files, list((tracked / "tensorboard").rglob("*"))
    got: dict[str, list[tuple[int, float]]] = {}
    for folder in {f.parent for f in files}:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            got.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    got = {tag: sorted(points) for tag, points in got.items()}
    want = _expected(tracked)
    assert {"train/loss", "train/lr", "train/epoch", "eval/accuracy", "eval/f1_macro"} <= set(want)
    _same(got, want)
    # throughput between train records, and the runner's mean at the last step
    assert [s for s, _ in got["train/samples_per_second"]] == [r["step"] for r in trains]
    metrics = json.loads((tracked / "metrics.json").read_text())
    assert [s for s, _ in got["train/mean_samples_per_second"]] == [metrics["steps"]]
    hparams = (tracked / "tensorboard").rglob("hparams.yml")
    assert any("lr" in p.read_text() for p in hparams)


def test_jsonl_tracker_matches_metrics_jsonl(tracked):
    lines = [json.loads(line) for line in (tracked / "tracking.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "hparams" and lines[0]["train.lr"] == pytest.approx(1e-3) and lines[0]["kind"] == "text_classification"
    got: dict[str, list[tuple[int, float]]] = {}
    for line in lines[1:]:
        assert line["type"] == "log" and isinstance(line["step"], int)
        for key, value in line.items():
            if key not in ("type", "step", "time"):
                got.setdefault(key, []).append((line["step"], float(value)))
    _same(got, _expected(tracked))


def test_mlflow_file_store_matches_metrics_jsonl(toy_task, isolated, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (optional: pip install mlflow)")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run_dir = train(build_run_config(str(toy_task), "lora", ["train.report_to=[mlflow]", "train.log_every_steps=2"]),
                    isolated / "run")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and float(run.data.params["train.lr"]) == pytest.approx(1e-3)
    want = _expected(run_dir)
    got = {tag: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)) for tag in want}
    _same(got, want)
