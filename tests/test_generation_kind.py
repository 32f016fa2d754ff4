"""The ``generation`` kind end to end: bad input (file:line, exit 2, nothing written), train -> save ->
eval/predict round trip with LoRA token rows, conversations, a seq2seq folder, and a real SmolLM2
fine-tune whose loss falls."""
from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

from gen_fixtures import *  # noqa: E402,F401,F403
from gen_fixtures import toy_mt_yaml, write_parallel  # noqa: E402
from mmsft.cli.main import main  # noqa: E402
from mmsft.errors import UserError  # noqa: E402
from mmsft.generation.encoding import IGNORE  # noqa: E402
from mmsft.metrics.modules.bleu import tokenize_for  # noqa: E402
from mmsft.models import build_model  # noqa: E402
from mmsft.kinds import KINDS  # noqa: E402
from mmsft.spec import build_run_config  # noqa: E402

KIND = KINDS.get("generation")


def load(task, *overrides):
    cfg = build_run_config(str(task), None, list(overrides))
    return cfg, KIND.load_data(cfg)


def assert_cli_fails(task, capsys, *args, match: str):
    """`mmsft train` exits 2 with one message naming the place, and writes no run folder."""
    runs = os.environ["MMSFT_RUNS_DIR"]
    assert main(["train", str(task), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (progress bars may precede it)
    assert err.startswith("mmsft: error:") and match in err, err
    assert not os.path.exists(runs) or not os.listdir(runs)


# -- bad input --------------------------------------------------------------------------------------
def test_misaligned_parallel_files_name_file_and_line(toy_mt, capsys):
    data = toy_mt.parent / "data"
    with (data / "train.de").open("a") as fh:
        fh.write("ein Satz zu viel\n")
    with pytest.raises(UserError, match=r"train\.de:49.*misaligned"):
        load(toy_mt)
    assert_cli_fails(toy_mt, capsys, match="train.de:49")


def test_empty_source_or_target_line(toy_mt, capsys):
    data = toy_mt.parent / "data"
    lines = (data / "val.en").read_text().splitlines()
    lines[2] = "  "
    (data / "val.en").write_text("\n".join(lines) + "\n")
    assert_cli_fails(toy_mt, capsys, match="val.en:3: empty line")


def test_empty_csv_target_names_the_row(tmp_path, tiny_llama, isolated):
    (tmp_path / "pairs.csv").write_text('instruction,response,intent\nhi,"hello\nthere",greet\nbye,,farewell\n')
    task = tmp_path / "cs.yaml"
    task.write_text(f"name: cs\nkind: generation\ndata: {{format: csv, root: {tmp_path}, files: {{all: pairs.csv}}, "
                    "source_column: instruction, target_column: response, field_columns: [intent]}\n"
                    f"model: {{backbone: {tiny_llama}}}\nmetrics: [bleu]\n")
    with pytest.raises(UserError, match=r"pairs\.csv:4: empty response"):  # line 4: the quoted reply spans lines 2-3
        load(task)


def test_prompt_lacking_required_field(toy_mt, capsys):
    with pytest.raises(UserError, match=r"data\.prompt: the prompt template lacks the required field \{source\}"):
        build_run_config(str(toy_mt), None, ["data.prompt=Translate this"])
    assert_cli_fails(toy_mt, capsys, "data.prompt=Translate this", match="data.prompt")


def test_prompt_naming_a_missing_field_names_file_and_line(toy_mt, capsys):
    assert_cli_fails(toy_mt, capsys, "data.prompt=[{intent}] {source}", match="train.en:1: data.prompt names field '{intent}'")


def test_role_template_needs_special_tokens(toy_mt):
    with pytest.raises(UserError, match="data.special_tokens"):
        build_run_config(str(toy_mt), None, ["data.special_tokens=false"])


def test_overlong_sample_error_or_counted_drop(tmp_path, tiny_llama, isolated, capsys):
    task = toy_mt_yaml(tmp_path, tiny_llama)
    data = tmp_path / "data"
    for lang, word in (("en", "very"), ("de", "sehr")):
        with (data / f"train.{lang}").open("a") as fh:
            fh.write(" ".join([word] * 80) + "\n")
    assert_cli_fails(task, capsys, match="train.en:49: sample is too long")
    cfg, data_ = load(task, "data.overlong=drop")
    model, tok = build_model(cfg, KIND, data_)
    prepared = KIND.prepare(cfg, tok, data_)
    assert len(prepared.splits["train"]) == 48 and KIND.data_summary(data_)["dropped_overlong"] == {"train": 1, "validation": 0, "test": 0}


def test_max_length_beyond_context(toy_mt):
    cfg, data = load(toy_mt, "model.max_length=1000")
    with pytest.raises(UserError, match="model.max_length.*context of 256"):
        build_model(cfg, KIND, data)


def test_conversation_must_end_with_assistant(tmp_path, tiny_llama, isolated):
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}) + "\n"
                                         + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
                                                                     {"role": "user", "content": "and?"}]}) + "\n")
    task = tmp_path / "chat.yaml"
    task.write_text(f"name: chat\nkind: generation\ndata: {{format: jsonl, root: {tmp_path}, files: {{all: chat.jsonl}}}}\n"
                    f"model: {{backbone: {tiny_llama}}}\nmetrics: [bleu]\n")
    with pytest.raises(UserError, match=r"chat\.jsonl:2: conversation does not end with an assistant turn"):
        load(task)


# -- conversations ----------------------------------------------------------------------------------
def test_multi_turn_jsonl_masks_history_and_closes_each_reply(tmp_path, tiny_llama, isolated):
    turns = [{"role": "user", "content": f"question {i}"} if i % 2 == 0 else {"role": "assistant", "content": f"answer {i}"} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"messages": turns, "topic": "x"}) for _ in range(10)) + "\n")
    task = tmp_path / "d.yaml"
    task.write_text(f"name: d\nkind: generation\ndata: {{format: jsonl, root: {tmp_path}, files: {{all: d.jsonl}}, split: {{train: 0.6, validation: 0.2, test: 0.2}}}}\n"
                    f"model: {{backbone: {tiny_llama}}}\nmetrics: [bleu]\n")
    cfg, data = load(task)
    model, tok = build_model(cfg, KIND, data)
    item = KIND.prepare(cfg, tok, data).splits["train"][0]
    ids, labels = item["input_ids"], item["labels"]
    carried = [i for i, x in enumerate(labels) if x != IGNORE]
    assert tok.decode([ids[i] for i in carried], skip_special_tokens=False) == "answer 1<|im_end|>answer 3<|im_end|>"
    assert item["reference"] == "answer 3" and item["source_text"] == "question 2"
    assert item["prompt_ids"] == ids[: len(item["prompt_ids"])] and ids[len(item["prompt_ids"])] == tok.encode("answer", add_special_tokens=False)[0]
    every_end = [i for i in carried if i + 1 not in carried]
    assert all(ids[i] == tok.eos_token_id for i in every_end)


def test_every_training_target_ends_with_eos(toy_mt):
    cfg, data = load(toy_mt)
    model, tok = build_model(cfg, KIND, data)
    prepared = KIND.prepare(cfg, tok, data)
    for split, items in prepared.splits.items():
        for it in items:
            last = max(i for i, x in enumerate(it["labels"]) if x != IGNORE)
            assert last == len(it["input_ids"]) - 1 and it["input_ids"][last] == tok.eos_token_id == it["labels"][last]


# -- train / save / eval / predict ------------------------------------------------------------------
def test_lora_run_round_trip_eval_and_predict(toy_mt, capsys):
    from mmsft.pipeline import evaluate_run, predict_run, train

    cfg = build_run_config(str(toy_mt), "lora", ["adapter.r=4", "train.lr=1.0e-2"])
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("bleu", "chrf", "rouge_l", "eos_rate", "length_ratio", "loss"):
        assert key in metrics["test"]
    signature = metrics["test"]["bleu_signature"]  # how BLEU was computed, stated in metrics.json and the report
    assert f"|tok:{tokenize_for(cfg.data.target_lang)}|" in signature and signature in (run / "report.md").read_text()
    from safetensors.torch import load_file

    saved = load_file(str(run / "model" / "adapters" / "lora" / "adapter_model.safetensors"))
    assert any("trainable_tokens_delta" in k for k in saved)
    assert not any(k.endswith("embed_tokens.weight") or k.endswith("lm_head.weight") for k in saved)  # no whole embedding
    assert sum(v.numel() for v in saved.values()) < 100_000
    report = (run / "report.md").read_text()
    assert "### Example outputs" in report and "| source | reference | prediction |" in report
    assert len((run / "test_predictions.jsonl").read_text().splitlines()) == 8
    again = evaluate_run(run)
    assert again.metrics["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    assert again.metrics["bleu"] == pytest.approx(metrics["test"]["bleu"]) and again.predictions == [
        json.loads(line)["prediction"] for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    rows = predict_run(run, ["the cat sees the dog", '{"source": "the man has the house"}'])
    assert [r["input"] for r in rows] == ["the cat sees the dog", '{"source": "the man has the house"}']
    assert all(isinstance(r["output"], str) and isinstance(r["stopped_by_eos"], bool) and r["new_tokens"] <= 8 for r in rows)
    assert main(["predict", str(run), " ".join(["word"] * 300)]) == 2
    assert "input 1: prompt of" in capsys.readouterr().err
    assert main(["predict", str(run), "ok", '{"messages": [{"role": "bot", "content": "hi"}]}']) == 2
    assert "input 2: message 1 has role 'bot'" in capsys.readouterr().err
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    # decoding settings of a trained run change on the command line; what shapes the model does not
    assert main(["predict", str(run), "the cat sees the dog", "--set", "data.generate.max_new_tokens=2",
                 "data.generate.num_beams=3"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["new_tokens"] <= 2
    assert len(evaluate_run(run, overrides=["data.max_test_samples=3"]).predictions) == 3
    assert main(["eval", str(run), "--set", "adapter.options.r=8"]) == 2
    assert "cannot change a trained run" in capsys.readouterr().err


def test_full_fine_tune_loss_falls_and_eos_is_learned(tmp_path, tiny_llama, isolated):
    from mmsft.pipeline import train

    task = toy_mt_yaml(tmp_path, tiny_llama, n_train=96)
    cfg = build_run_config(str(task), "full", ["train.lr=2.0e-2", "train.layer_decay=1.0", "train.epochs=4", "train.batch_size=16", "train.warmup_ratio=0.0",
                                             "train.early_stopping.restore_best=false"])  # the last weights, not the best-BLEU ones
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["type"] == "train"]
    assert losses[-1] < losses[0] * 0.5
    assert metrics["eos_rate"] >= 0.5  # it has learnt to close outputs with EOS


def test_local_seq2seq_folder_trains_and_generates(tmp_path, tiny_t5, isolated):
    from mmsft.pipeline import predict_run, train

    task = toy_mt_yaml(tmp_path, tiny_t5)
    cfg = build_run_config(str(task), "lora", ["adapter.r=4", "data.template=plain"])
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["loss"] > 0 and "bleu" in metrics["test"]
    rows = predict_run(run, ["the cat sees the dog"])
    assert rows[0]["new_tokens"] <= 8


# -- real model -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_lora_translation_loss_falls(tmp_path, smol_path, isolated):
    """Real SmolLM2-135M + LoRA on 48 Multi30K pairs: the loss on a fixed batch falls (about 1-2 min)."""
    from mmsft.pipeline import build_session
    from mmsft.training.runner import Runner

    cfg = build_run_config("translation_en_de", "lora", [
        f"model.backbone={smol_path}", "data.max_train_samples=48", "data.max_validation_samples=4", "data.max_test_samples=4",
        "data.generate.max_new_tokens=4", "train.batch_size=8", "train.max_steps=5", "train.lr=2.0e-3", "train.threads=1"])
    session = build_session(cfg)
    model, prepared = session.model, session.prepared
    batch = prepared.collate(prepared.splits["train"][:8])
    model.eval()
    with torch.no_grad():
        before = float(model(**batch)["loss"])
    (tmp_path / "run").mkdir()
    runner = Runner(cfg.train, model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
                    lambda m: {}, tmp_path / "run")
    runner.fit()
    model.eval()
    with torch.no_grad():
        after = float(model(**batch)["loss"])
    assert after < before - 0.5, (before, after)
