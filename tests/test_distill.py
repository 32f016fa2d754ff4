"""mmsft distill on tiny models: the KD loss (equals the label loss at α = 0, hand-computed KL),
teacher logits computed once per sample, a truncated-teacher student end to end, hidden-state KD
through a projection when widths differ, token-level KD only for one vocabulary, sequence-level KD
across tokenizers, and run folders that eval / predict accept."""
from __future__ import annotations

import json
import math

import pytest
import torch

from derive_fixtures import *  # noqa: F401,F403
from derive_fixtures import toy_task_yaml, train_toy
from gen_fixtures import smol_path, tiny_llama, toy_mt_yaml  # noqa: F401
from mmsft.cli.main import main
from mmsft.distill.objective import Distill, DistillOptions, soft_kl
from mmsft.pipeline import evaluate_run, load_run, predict_run


@pytest.fixture(scope="module")
def cls(derive_env, tiny_bert4):
    root = derive_env
    task = toy_task_yaml(root, tiny_bert4)
    other = toy_task_yaml(root, tiny_bert4, name="toy2", labels=("bad", "good"))
    return {"root": root, "task": task, "teacher": train_toy(task, root / "teacher", "full"), "other": train_toy(other, root / "other", "full")}


def _json(text: str) -> dict:
    """The JSON summary a command prints after training's own progress lines."""
    return json.loads(text[text.index("\n{") + 1:] if not text.startswith("{") else text)


def _batches(run, n=3):
    session = load_run(run)
    prepared = session.kind.prepare(session.cfg, session.processor, session.kind.load_data(session.cfg))
    data = prepared.splits["train"]
    return session, [prepared.collate([data[i] for i in range(k * 8, k * 8 + 8)]) for k in range(n)]


def test_soft_kl_matches_a_hand_computation():
    s, t = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    p = torch.softmax(t / 2, -1)
    q = torch.softmax(s / 2, -1)
    expected = 4 * float((p * (p / q).log()).sum())
    assert soft_kl(s, t, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert soft_kl(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_equals_the_label_loss_at_alpha_zero_and_mixes_as_documented(cls):
    session, batches = _batches(cls["teacher"], 1)
    model, batch = session.model.eval(), batches[0]
    ce = model(**batch)["loss"]
    at_zero, _ = Distill(DistillOptions(teacher=str(cls["teacher"]), alpha=0.0)).loss(model, batch)
    assert torch.equal(at_zero, ce)
    # the teacher is the same run: the soft term vanishes, whatever alpha
    self_kd, logs = Distill(DistillOptions(teacher=str(cls["teacher"]), alpha=1.0, temperature=3.0)).loss(model, batch)
    assert self_kd.item() == pytest.approx(0.0, abs=1e-6) and "loss/kd" in logs
    # another teacher: (1 - a) CE + a T^2 KL, computed here from the two models' logits
    other = load_run(cls["other"]).model.eval()
    mixed, _ = Distill(DistillOptions(teacher=str(cls["other"]), alpha=0.3, temperature=2.0)).loss(model, batch)
    s = model(**batch)["heads"]["classification"]["logits"]
    t = other(**batch)["heads"]["classification"]["logits"]
    p, log_q = torch.softmax(t / 2, -1), torch.log_softmax(s / 2, -1)
    kl = (p * (p.log() - log_q)).sum(-1).mean()
    assert mixed.item() == pytest.approx(0.7 * ce.item() + 0.3 * 4 * kl.item(), rel=1e-5)


def test_teacher_logits_are_computed_once_per_training_sample(cls):
    session, batches = _batches(cls["teacher"])
    objective = Distill(DistillOptions(teacher=str(cls["other"]), alpha=0.5))
    calls = []
    objective.loss(session.model, batches[0])  # loads the teacher
    objective.teacher.register_forward_hook(lambda *_: calls.append(1))
    first = [objective.loss(session.model, b)[0].item() for b in batches[1:]]
    again = [objective.loss(session.model, b)[0].item() for b in batches[1:]]
    assert len(calls) == 2  # the second pass found every sample cached
    assert objective.cache_misses == 24 and objective.cache_hits == 16
    assert first == pytest.approx(again)
    uncached = Distill(DistillOptions(teacher=str(cls["other"]), alpha=0.5, cache=False))
    assert uncached.loss(session.model, batches[1])[0].item() == pytest.approx(first[0], rel=1e-6) and not uncached.cache


def test_truncated_teacher_student_end_to_end(cls, tmp_path, capsys):
    out = tmp_path / "student"
    teacher = str(cls["teacher"])
    assert main(["distill", str(cls["task"]), "--teacher", teacher, "--student", f"{{from: {teacher}, layers: 2}}",
                 "alpha=0.5", "temperature=2", "hidden_weight=1", "train.epochs=1", "--output", str(out)]) == 0
    summary = _json(capsys.readouterr().out)
    assert summary["distill"]["student"]["blocks"] == 2 and summary["distill"]["mode"] == "logits"
    init = json.loads((out / "student_init" / "config.json").read_text())
    assert init["num_hidden_layers"] == 2
    session = load_run(out)
    assert len(session.model.backbone.blocks()) == 2
    assert session.cfg.objective["name"] == "distill" and session.cfg.objective["hidden_weight"] == 1
    assert not session.cfg.model.modules  # same width: no projection
    assert evaluate_run(out).metrics["accuracy"] == summary["test"]["accuracy"]
    assert predict_run(out, ["great results"])[0]["label"] in ("neg", "pos")


@pytest.fixture(scope="module")
def narrow_bert(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmsft.zoo import resolve

    folder = tmp_path_factory.mktemp("narrow_bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hidden_state_kd_learns_a_projection_when_widths_differ(cls, narrow_bert, tmp_path):
    out = tmp_path / "narrow"
    assert main(["distill", str(cls["task"]), "--teacher", str(cls["teacher"]), "--student", str(narrow_bert),
                 "hidden_weight=2", "train.epochs=1", "--output", str(out)]) == 0
    session = load_run(out)
    (projection,) = [m for m in session.cfg.model.modules if m.type == "distill_projection"]
    assert projection.options.teacher_width == 32 and projection.options.layers == [0, 1]
    maps = session.model.inserts["distill_projection"].maps
    assert maps["0"].weight.shape == (32, 16)
    from safetensors.torch import load_file

    saved = load_file(str(out / "model" / "modules.safetensors"))
    untrained = torch.nn.Linear(16, 32)
    assert any("maps.0.weight" in k for k in saved)
    assert not torch.equal(maps["0"].weight, untrained.weight)
    predict_run(out, ["sales fell"])


def test_bad_distillation_input_exits_2_and_writes_nothing(cls, narrow_bert, tmp_path, capsys):
    out = tmp_path / "bad"
    base = ["distill", str(cls["task"]), "--output", str(out)]
    assert main([*base, "--teacher", str(cls["other"]), "--student", str(narrow_bert)]) == 2
    assert "another label set" in capsys.readouterr().err
    assert main([*base, "--teacher", str(cls["teacher"]), "--student", str(narrow_bert), "alpah=0.2"]) == 2
    assert "Did you mean 'alpha'" in capsys.readouterr().err
    assert main([*base, "--teacher", str(cls["teacher"]), "--student", str(narrow_bert), "--mode", "token"]) == 2
    assert main([*base, "--teacher", str(cls["teacher"]), "--student", str(narrow_bert), "--layers", "1"]) == 2
    assert "layers cuts a trained run" in capsys.readouterr().err
    assert not out.exists()


# -- generation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_vocab_lm(tmp_path_factory):
    """A tiny causal LM with BERT's WordPiece vocabulary: another tokenizer than SmolLM2's."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mmsft.zoo import resolve

    folder = tmp_path_factory.mktemp("wordpiece_lm")
    tok = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    tok.eos_token = "[SEP]"
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mt(derive_env, tiny_llama):
    root = derive_env / "mt"
    root.mkdir()
    task = toy_mt_yaml(root, tiny_llama, n_train=24)
    return {"task": task, "teacher": train_toy(task, root / "teacher", "lora", ["train.epochs=1"])}


def test_sequence_level_kd_trains_on_the_teachers_outputs_across_tokenizers(mt, other_vocab_lm, tmp_path, capsys):
    out = tmp_path / "seq"
    assert main(["distill", str(mt["task"]), "--teacher", str(mt["teacher"]), "--student", str(other_vocab_lm),
                 "--adapter", "lora", "train.epochs=1", "--output", str(out)]) == 0
    record = json.loads((out / "distill.json").read_text())
    assert record["mode"] == "sequence" and record["teacher_decode"]["decoded"] == 24
    decoded = [json.loads(line) for line in (out / "teacher_data" / "decoded.jsonl").read_text().splitlines()]
    outputs = {d["i"]: " ".join(d["output"].split()) for d in decoded}
    train_de = (out / "teacher_data" / "data" / "train.de").read_text().splitlines()
    references = (mt["task"].parent / "data" / "train.de").read_text().splitlines()
    for i, line in enumerate(train_de):
        assert line == (outputs[i] or references[i])  # the teacher's output (its reference where it said nothing)
    assert (out / "teacher_data" / "data" / "test.de").read_text().splitlines() == (mt["task"].parent / "data" / "test.de").read_text().splitlines()
    assert load_run(out).cfg.objective["name"] == "single"
    rows = predict_run(out, ["the cat sees the dog"])
    assert "output" in rows[0]
    evaluate_run(out)


def test_token_level_kd_needs_one_vocabulary(mt, other_vocab_lm, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["distill", str(mt["task"]), "--teacher", str(mt["teacher"]), "--student", str(other_vocab_lm), "--mode", "token",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vocabularies differ" in err and "--mode sequence" in err and not out.exists()
    teacher = str(mt["teacher"])
    assert main(["distill", str(mt["task"]), "--teacher", teacher, "--student", f"{{from: {teacher}, layers: 1}}", "--mode", "token",
                 "alpha=0.5", "train.epochs=1", "--output", str(out)]) == 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert log and all(math.isfinite(r["loss"]) for r in log)
    assert load_run(out).cfg.objective["name"] == "distill"
