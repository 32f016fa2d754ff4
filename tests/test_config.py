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
            assert cfg.name == task and [s.method for s in cfg.adapters.values()][0] in ("full", "lora", "frozen")


def test_adapter_preset_train_block_and_overrides_take_precedence():
    cfg = build_run_config("finance_sentiment", "lora", ["train.lr=2e-4", "adapter.r=4"])
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.adapters["lora"].options.r == 4
    assert build_run_config("finance_sentiment", "lora").train.lr == pytest.approx(1e-3)  # from adapters/lora.yaml


@pytest.mark.parametrize("override, where, hint", [
    ("trian.lr=1", "trian", "Did you mean 'train'?"),
    ("train.lrr=1", "train.lrr", "Did you mean 'lr'?"),
    ("adapter.rank=8", "adapters.lora.options.rank", "one of: r,"),
    ("adapters.lora.rank=8", "adapters.lora.options.rank", "one of: r,"),
    ("model.heads.classification.dropuot=0", "model.heads.classification.options.dropuot", "Did you mean 'dropout'?"),
    ("model.heads.classification.type=lm", "model.heads.classification.type", "does not fit a text_classification task"),
    ("model.heads.classification.type=clasification", "", "Did you mean 'classification'?"),
    ("model.modules=[{type: bottleneck_adaptor}]", "", "Did you mean 'bottleneck_adapter'?"),
    ("model.modules=[{type: bottleneck_adapter, options: {size: 0}}]", "model.modules[0].options.size", "must be >= 1"),
    ("train.early_stopping.metric=acuracy", "train.early_stopping.metric", "Did you mean 'accuracy'?"),
    ("train.callbacks=[{name: emma}]", "", "Did you mean 'ema'?"),
    ("objective.name=singel", "", "Did you mean 'single'?"),
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


@pytest.mark.parametrize("override, where, hint", [
    ("train.lr=-1", "train.lr", "must be > 0"),
    ("train.lr=0", "train.lr", "must be > 0"),
    ("train.epochs=0", "train.epochs", "must be > 0"),
    ("train.batch_size=0", "train.batch_size", "must be >= 1"),
    ("train.warmup_ratio=1.0", "train.warmup_ratio", "[0, 1)"),
    ("train.grad_accum=0", "train.grad_accum", "must be >= 1"),
    ("train.weight_decay=-0.1", "train.weight_decay", "must be >= 0"),
    ("train.early_stopping.patience=-1", "train.early_stopping.patience", "must be >= 0"),
    ("model.max_length=0", "model.max_length", "must be >= 1"),
    ("loss.label_smoothing=1.5", "loss", "label_smoothing must be in [0, 1)"),
    ("data.split.train=0.9", "data.split", "sum to 1.1"),
    ("data.labels=[positive]", "data.labels", "at least two"),
    ("adapter.r=0", "adapters.lora.options", "r must be >= 1"),
    ("model.heads.classification.dropout=1.0", "model.heads.classification.options.dropout", "[0, 1)"),
])
def test_out_of_range_numbers_name_the_key_and_range(override, where, hint):
    with pytest.raises(UserError) as err:
        build_run_config("finance_sentiment", "lora", [override])
    message = str(err.value)
    assert message.startswith(where) and hint in message, message


def test_early_stopping_metric_must_be_a_validation_metric_of_the_task():
    assert build_run_config("traffic_vehicles").train.early_stopping.metric == "map50_95"
    assert build_run_config("translation_en_de", None, ["train.early_stopping.metric=loss",
                                                         "train.early_stopping.mode=min"]).train.early_stopping.metric == "loss"
    with pytest.raises(UserError, match="map50_95"):  # a detection task has no 'accuracy'
        build_run_config("traffic_vehicles", None, ["train.early_stopping.metric=accuracy"])


def test_stacked_presets_merge_their_train_blocks_in_order():
    cfg = build_run_config("finance_sentiment", "frozen_top2,lora")
    assert list(cfg.adapters) == ["frozen_top2", "lora"] and cfg.adapter_label == "frozen_top2+lora"
    assert cfg.train.lr == pytest.approx(1e-3)  # lora.yaml's train block comes last
    with pytest.raises(UserError, match="ambiguous"):
        build_run_config("finance_sentiment", "frozen_top2,lora", ["adapter.r=4"])
    assert build_run_config("finance_sentiment", "frozen_top2,lora", ["adapters.lora.r=4"]).adapters["lora"].options.r == 4
    with pytest.raises(UserError, match="cannot be stacked"):
        build_run_config("finance_sentiment", "full,lora")


def test_max_length_beyond_the_backbones_positions_exits_2_before_anything_is_written(tmp_path, capsys):
    from mmsft.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "finance_sentiment", "--adapter", "lora", "model.max_length=100000", "--output", str(out)]) == 2
    assert "model.max_length 100000 exceeds the backbone's 512 positions" in capsys.readouterr().err
    assert not out.exists()
