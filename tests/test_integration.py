"""Real pretrained MiniLM on a small real subset of Financial PhraseBank, through the CLI."""
import json
from collections import Counter

import pytest

from mmsft.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finance_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finance") / "run"
    code = main(["train", "finance_sentiment", "--adapter", "lora", "--output", str(out),
                 "data.max_train_samples=800", "train.epochs=2", "train.eval_batch_size=256"])
    assert code == 0
    return out


def test_real_minilm_beats_majority_class(finance_run):
    metrics = json.loads((finance_run / "metrics.json").read_text())
    from mmsft.pipeline import build_session  # noqa: F401  (import check only)
    from mmsft.kinds import KINDS
    from mmsft.spec import load_run_config

    cfg = load_run_config(finance_run)
    test_labels = KINDS.get(cfg.kind).load_data(cfg)["test"]["label"]
    majority = Counter(test_labels).most_common(1)[0][1] / len(test_labels)
    assert metrics["test"]["accuracy"] >= majority + 0.12, (metrics["test"], majority)
    assert metrics["trainable_params"] < 0.05 * metrics["total_params"]  # LoRA: a few percent trains
    report = (finance_run / "report.md").read_text()
    assert "| accuracy |" in report and "confusion_matrix.png" in report
    assert (finance_run / "model" / "adapters" / "lora" / "adapter_model.safetensors").is_file()
    assert not (finance_run / "model" / "adapters" / "lora" / "model.safetensors").exists()  # adapter weights only


def test_eval_and_predict_on_the_saved_run(finance_run, capsys):
    assert main(["eval", str(finance_run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    saved = json.loads((finance_run / "metrics.json").read_text())["test"]
    assert evaluated["accuracy"] == pytest.approx(saved["accuracy"], abs=1e-6)

    assert main(["predict", str(finance_run), "Operating profit rose sharply to EUR 30 million from EUR 4 million .",
                 "The company reported a net loss and cut its outlook ."]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-3 for r in rows)
