"""Config validation: unknown keys, wrong types, overrides, unknown names — each a UserError with a hint."""
import pytest

from mmsft.config import apply_overrides, parse_override
from mmsft.errors import UserError
from mmsft.spec import build_run_config


def test_shipped_tasks_and_adapters_validate():
    from mmsft import paths
    from mmsft.spec import list_names

    for task in list_names(paths.task_dirs()):
        for adapter in list_names(paths.adapter_dirs()):
            cfg = build_run_config(task, adapter)
            assert cfg.name == task and cfg.adapter.method in ("full", "lora", "frozen")


def test_adapter_preset_train_block_and_overrides_take_precedence():
    cfg = build_run_config("finance_sentiment", "lora", ["train.lr=2e-4", "adapter.r=4"])
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.adapter.options.r == 4
    assert build_run_config("finance_sentiment", "lora").train.lr == pytest.approx(1e-3)  # from adapters/lora.yaml


@pytest.mark.parametrize("override, where, hint", [
    ("trian.lr=1", "trian", "Did you mean 'train'?"),
    ("train.lrr=1", "train.lrr", "Did you mean 'lr'?"),
    ("adapter.rank=8", "adapter.options.rank", "one of: r,"),
    ("data.encodng=utf-8", "data.encodng", "Did you mean 'encoding'?"),
    ("train.lr=fast", "train.lr", "expected float"),
    ("train.batch_size=true", "train.batch_size", "expected int"),
    ("loss.name=focall", "", "Did you mean 'focal'?"),
    ("train.schedule=cosin", "", "Did you mean 'cosine'?"),
    ("metrics=[accuracy, bleu]", "metrics[1]", "does not fit"),
])
def test_bad_keys_and_types_name_the_key_path(override, where, hint):
    with pytest.raises(UserError) as err:
        build_run_config("finance_sentiment", "lora", [override])
    message = str(err.value)
    assert message.startswith(where) and hint in message


def test_unknown_names_get_suggestions():
    with pytest.raises(UserError, match="Did you mean 'finance_sentiment'"):
        build_run_config("finance_sentimnt")
    with pytest.raises(UserError, match="Did you mean 'lora'"):
        build_run_config("finance_sentiment", "lorra")


def test_override_parsing():
    assert parse_override("train.lr=1e-4") == (["train", "lr"], "1e-4")  # float conversion happens at validation
    assert parse_override("metrics=[accuracy]") == (["metrics"], ["accuracy"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    for bad in ["train.lr", "=3", "a..b=1"]:
        with pytest.raises(UserError, match="key.path=value"):
            parse_override(bad)


def test_backbone_hub_id_offline_fails_fast(monkeypatch):
    import time

    from mmsft.zoo import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UserError, match="minilm-l6"):
        resolve("someone/some-model")
    assert time.perf_counter() - start < 5


def test_user_task_folder_extends_the_registry(tmp_path, monkeypatch, capsys):
    from mmsft.cli.main import main

    shipped = (build_run_config.__globals__["paths"].task_dirs()[-1] / "finance_sentiment.yaml").read_text()
    (tmp_path / "my_finance.yaml").write_text(shipped.replace("name: finance_sentiment", "name: my_finance"))
    monkeypatch.setenv("MMSFT_TASKS_PATH", str(tmp_path))
    assert build_run_config("my_finance").name == "my_finance"
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "my_finance" in out and "finance_sentiment" in out
