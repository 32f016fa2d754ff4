"""The Python API (``mmsft.train`` / ``mmsft.load`` / ``Run`` / ``mmsft.tasks.register``) is the CLI's code path:
a run it trains is an ordinary run folder, its evaluation is ``metrics.json``'s, its predictions are
``mmsft predict``'s, and bad input raises the CLI's ``UserError``."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

import mmsft
from conftest import write_toy_csv, write_toy_task
from mmsft.api import Run, override_strings
from mmsft.cli.main import main
from mmsft.config import parse_override
from mmsft.errors import UserError

TEXTS = ["the company said profit rose", "sales fell sharply", "record sales", "weak demand in the quarter", "ok"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """One LoRA run of the toy task trained through ``mmsft.train`` (module-wide: the tests only read it)."""
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_RUNS_DIR", str(root / "runs"))
        mp.setenv("MMSFT_CACHE", str(root / "cache"))
        task = write_toy_task(root, tiny_bert)
        run = mmsft.train(task, adapter="lora", overrides={"train.epochs": 2, "train.lr": 5e-3}, output=root / "run")
        yield run


def _cli_predict(run, texts, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", str(run.path), *texts]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_train_returns_a_finished_run_folder(trained):
    assert isinstance(trained, Run) and trained.finished and "finished" in repr(trained)
    assert trained.metrics == json.loads((trained.path / "metrics.json").read_text())
    assert trained.metrics["adapter"] == "lora" and trained.metrics["epochs_completed"] == 2
    assert trained.config.train.lr == pytest.approx(5e-3) and trained.config.train.epochs == 2
    assert (trained.path / "model").is_dir() and (trained.path / "metrics.jsonl").is_file()


def test_evaluate_equals_metrics_json(trained, capsys):
    test = trained.metrics["test"]
    assert trained.evaluate(split="test") == pytest.approx(test)
    assert trained.evaluate() == pytest.approx(test)  # test is the default split
    validation = trained.evaluate(split="validation")
    assert set(validation) == set(test) and 0.0 <= validation["accuracy"] <= 1.0


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_predict_equals_cli_predict(trained, capsys, batch_size):
    ours = trained.predict(TEXTS, batch_size=batch_size)
    cli = _cli_predict(trained, TEXTS, capsys)
    assert len(ours) == len(cli) == len(TEXTS)
    for a, b in zip(ours, cli):
        assert a["label"] == b["label"] and set(a["scores"]) == set(b["scores"]) == {"neg", "pos"}
        assert a["score"] == pytest.approx(b["score"], abs=2e-4)  # padding differs per batch: float noise only
        for label in a["scores"]:
            assert a["scores"][label] == pytest.approx(b["scores"][label], abs=2e-4)


def test_predict_one_string_gives_one_row_and_empty_gives_none(trained):
    one = trained.predict(TEXTS[0])
    assert isinstance(one, dict) and one["label"] == trained.predict([TEXTS[0]])[0]["label"]
    assert trained.predict([]) == []


def test_load_reads_the_same_run(trained):
    loaded = mmsft.load(trained.path)
    assert loaded.path == trained.path and loaded.metrics == trained.metrics
    assert mmsft.load(loaded) is loaded
    assert [r["label"] for r in loaded.predict(TEXTS)] == [r["label"] for r in trained.predict(TEXTS)]
    assert mmsft.load(str(trained.path)).evaluate() == pytest.approx(trained.metrics["test"])


def test_override_values_round_trip_through_the_cli_parser():
    import numpy as np

    values = {"train.lr": 1e-05, "train.epochs": 3, "a.b": 2.5e16, "a.flag": True, "a.none": None, "a.text": "yes",
              "a.quoted": 'say "hi": now', "a.list": [1, "two", 3.0], "a.map": {"x": 1, "y": [False]},
              "a.np_float": np.float64(0.1), "a.np_int": np.int64(7), "a.neg": -1e-3}
    expected = {**values, "a.np_float": 0.1, "a.np_int": 7}
    strings = override_strings(values)
    parsed = {".".join(key): value for key, value in map(parse_override, strings)}
    assert parsed == expected
    assert type(parsed["train.lr"]) is float and type(parsed["a.np_int"]) is int
    assert math.isnan(parse_override(override_strings({"x": float("nan")})[0])[1])
    assert override_strings(["train.lr=1e-4"]) == ["train.lr=1e-4"] and override_strings(None) == []


def test_registered_task_trains_by_name(tmp_path, tiny_bert, isolated, monkeypatch):
    monkeypatch.delenv("MMSFT_TASKS_PATH", raising=False)
    monkeypatch.setattr(mmsft.tasks, "_FOLDER", None)  # a fresh per-process registry folder
    data = tmp_path / "data"
    data.mkdir()
    write_toy_csv(data / "toy.csv", n=60)
    spec = {"name": "api_toy", "kind": "text_classification",
            "data": {"format": "csv", "root": str(data), "files": {"all": "toy.csv"}, "labels": ["neg", "pos"],
                     "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 1}},
            "model": {"backbone": str(tiny_bert), "max_length": 32}, "metrics": ["accuracy"],
            "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "lr": 1e-3}}
    assert mmsft.tasks.register(spec) == "api_toy"
    assert "api_toy" in mmsft.tasks.names() and mmsft.tasks.spec("api_toy")["kind"] == "text_classification"
    run = mmsft.train("api_toy", adapter="lora", output=tmp_path / "by_name")
    assert run.metrics["task"] == "api_toy" and run.metrics["adapter"] == "lora"
    # a YAML file registers under another name; a dict goes straight to mmsft.train (registered first)
    yaml_file = tmp_path / "spec.yaml"
    yaml_file.write_text(json.dumps({**spec, "name": "from_yaml"}))
    assert mmsft.tasks.register(str(yaml_file), name="api_toy_yaml", folder=tmp_path / "mine") == "api_toy_yaml"
    assert (tmp_path / "mine" / "api_toy_yaml.yaml").is_file() and "api_toy_yaml" in mmsft.tasks.names()
    run = mmsft.train({**spec, "name": "api_dict"}, adapter=["lora"], overrides=["train.max_steps=2"], output=tmp_path / "dict")
    assert run.metrics["task"] == "api_dict" and run.metrics["steps"] == 2


def test_resume_continues_a_finished_run(trained):
    assert mmsft.train(None, resume=True, output=trained.path).path == trained.path


BAD = {
    "unknown task": (lambda t: mmsft.train("no_such_task_xyz"), "no_such_task_xyz"),
    "unknown adapter": (lambda t: mmsft.train(t, adapter="no_such_adapter"), "no_such_adapter"),
    "unknown key": (lambda t: mmsft.train(t, overrides={"train.no_such_key": 1}), "no_such_key"),
    "bad value": (lambda t: mmsft.train(t, overrides={"train.epochs": "many"}), "train.epochs"),
    "one string": (lambda t: mmsft.train(t, overrides="train.lr=1"), "overrides"),
    "object value": (lambda t: mmsft.train(t, overrides={"train.lr": object()}), "overrides"),
    "resume without output": (lambda t: mmsft.train(t, resume=True), "output=RUN"),
    "load missing": (lambda t: mmsft.load(t.parent / "nowhere"), "no config.yaml"),
    "register without name": (lambda t: mmsft.tasks.register({"kind": "text_classification"}), "name"),
    "register bad spec": (lambda t: mmsft.tasks.register({"name": "x_bad", "kind": "text_classification", "bogus": 1}), "bogus"),
    "register bad yaml": (lambda t: mmsft.tasks.register("name: [unclosed\nkind: x"), "invalid YAML"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_user_error_and_writes_nothing(case, toy_task, isolated):
    call, match = BAD[case]
    with pytest.raises(UserError, match=match):
        call(toy_task)
    runs = isolated / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_bad_run_calls_raise_user_error(trained, tmp_path):
    with pytest.raises(UserError, match="unknown split"):
        trained.evaluate(split="dev")
    with pytest.raises(UserError, match="batch_size"):
        trained.predict(TEXTS, batch_size=0)
    with pytest.raises(UserError, match="cannot change a trained run"):
        trained.predict(TEXTS, overrides={"train.lr": 1.0})
    with pytest.raises(UserError, match="unknown export format"):
        trained.export("gguf", out=tmp_path / "x")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text((trained.path / "config.yaml").read_text())
    half = mmsft.load(tmp_path / "half")
    assert not half.finished and "unfinished" in repr(half)
    with pytest.raises(UserError, match="did not finish"):
        half.metrics
    with pytest.raises(UserError, match="did not finish"):
        half.predict(TEXTS)


def test_import_mmsft_stays_light():
    import subprocess
    import sys

    code = textwrap.dedent("""\
        import sys, mmsft
        assert callable(mmsft.train) and callable(mmsft.load) and mmsft.tasks.register
        heavy = [m for m in ("torch", "transformers", "datasets") if m in sys.modules]
        assert not heavy, heavy
        """)
    subprocess.run([sys.executable, "-c", code], check=True)
