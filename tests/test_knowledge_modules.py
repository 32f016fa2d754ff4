"""The knowledge modules on tiny models: each changes what the model outputs and trains (its parameters
move; a frozen backbone's do not), a saved run reloads with its KB to the same predictions, and
``mmsft predict`` shows the passages used; then one short real run per module (MiniLM-L6 on real
Financial PhraseBank rows with the Loughran-McDonald KB; real Bitext replies with their policy KB)."""
from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import NEGATIVE, POSITIVE, SHARED_DATA
from gen_fixtures import *  # noqa: F401,F403  (tiny_llama, smol_path)
from mmsft.pipeline import evaluate_run, load_run, predict_run, train
from mmsft.registry import KINDS
from mmsft.spec import build_run_config
from test_composed import Recorder as StateRecorder

COMMON = ["train.threads=1", "train.early_stopping.restore_best=false"]


class Recorder(StateRecorder):
    """The trained model object and its state before and after training, and which tensors changed."""

    def changed(self, prefix: str) -> set[str]:
        return {k for k in self.before if k.startswith(prefix) and not torch.equal(self.before[k], self.after[k])}


def sentiment_kb(path: Path) -> Path:
    entries = [{"id": w, "text": f"{w}: {label}", "aliases": [w], "sentiment": label}
               for words, label in ((POSITIVE, "positive"), (NEGATIVE, "negative")) for w in words]
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.fixture
def text_task(toy_task, tmp_path) -> tuple[Path, Path]:
    """conftest's toy task (tiny BERT, max_length 32) and a KB of its sentiment words."""
    return toy_task, sentiment_kb(tmp_path / "kb.jsonl")


def probs(cfg, model, prepared, split="test"):
    return KINDS.get(cfg.kind).evaluate(cfg, model, prepared, split).extra["probs"]


def prepared_for(cfg, session=None):
    kind = KINDS.get(cfg.kind)
    return kind.prepare(cfg, session.processor, kind.load_data(cfg))


def test_retrieved_segments_change_inputs_and_outputs_and_reload(text_task, tmp_path):
    task, kb = text_task
    knowledge = f"knowledge={{kb: {kb}, retrieval: {{method: bm25, k: 2, budget: 12}}}}"
    recorder = Recorder()
    run = train(build_run_config(str(task), "lora", [*COMMON, knowledge]), tmp_path / "run", callbacks=[recorder])
    session = load_run(run)
    cfg, tokenizer = session.cfg, session.processor
    token = tokenizer.convert_tokens_to_ids("<|knowledge|>")
    assert session.model.backbone.new_token_ids == [token]  # its embedding row trains under LoRA
    with_kb = prepared_for(cfg, session)
    first = with_kb.splits["train"][0]["input_ids"].tolist()
    assert first[1] == token and tokenizer.sep_token_id in first[2:15]  # [CLS] <|knowledge|> passage ... [SEP] text
    plain = prepared_for(dataclasses.replace(cfg, knowledge=None), session)
    assert not torch.allclose(probs(cfg, session.model, with_kb), probs(cfg, session.model, plain))  # the passages change outputs
    assert torch.allclose(probs(cfg, recorder.model, with_kb), probs(cfg, session.model, with_kb), atol=1e-6)  # save -> load
    assert evaluate_run(run).metrics == json.loads((run / "metrics.json").read_text())["test"]
    rows = predict_run(run, ["the company said great results 7", "results were awful 8"])
    assert rows == predict_run(run, ["the company said great results 7", "results were awful 8"])
    assert rows[0]["knowledge"][0]["id"] == "great" and rows[0]["knowledge"][0]["score"] > 0 and rows[1]["knowledge"][0]["id"] == "awful"
    assert "## Knowledge" in (run / "report.md").read_text()


def test_entity_memory_trains_with_a_frozen_backbone_and_reloads(text_task, tmp_path, tiny_bert):
    task, kb = text_task
    overrides = [*COMMON, f"knowledge={{kb: {kb}, inject: [], retrieval: {{encoder: {tiny_bert}}}}}",
                 "model.modules=[{type: entity_memory, options: {entity_dim: 32, heads: 2}}]"]
    recorder = Recorder()
    run = train(build_run_config(str(task), "frozen", overrides), tmp_path / "run", callbacks=[recorder])
    assert not recorder.changed("backbone.") and recorder.changed("inserts.entity_memory.attention.out_proj")
    assert json.loads((run / "metrics.json").read_text())["features_cached"] is False  # the module trains on the token states
    session = load_run(run)
    prepared = prepared_for(session.cfg, session)
    batch = prepared.collate([prepared.splits["train"][i] for i in range(4)])
    assert batch["knowledge_entities"].shape[:2] == batch["knowledge_entity_mask"].shape and batch["knowledge_entity_mask"].any()
    trained = probs(session.cfg, session.model, prepared)
    assert torch.allclose(probs(session.cfg, recorder.model, prepared), trained, atol=1e-6)
    with torch.no_grad():
        session.model.inserts["entity_memory"].attention.out_proj.weight.zero_()
        session.model.inserts["entity_memory"].attention.out_proj.bias.zero_()
    assert not torch.allclose(probs(session.cfg, session.model, prepared), trained)  # the module changes outputs
    row = predict_run(run, ["profit rose and sales fell 9"])[0]
    assert row["linked"] == ["profit rose", "sales fell"] and "knowledge" not in row


def test_knowledge_adapter_pretrains_on_the_kb_then_stays_frozen(text_task, tmp_path, capsys):
    from mmsft.pipeline import build_session

    task, kb = text_task
    module = f"model.modules=[{{type: knowledge_adapter, options: {{kb: {kb}, targets: [sentiment], steps: 40, size: 8, layers: [-1]}}}}]"
    recorder = Recorder()
    run = train(build_run_config(str(task), "frozen", [*COMMON, module]), tmp_path / "run", callbacks=[recorder])
    assert "knowledge_adapter pre-trained on kb" in capsys.readouterr().out
    report = recorder.model.inserts["knowledge_adapter"].pretraining
    assert report["steps"] == 40 and 0 <= report["heldout"] <= 1 and "sentiment" in report["objective"]
    up = recorder.before["inserts.knowledge_adapter.adapters.1.up.weight"]
    assert up.abs().sum() > 0  # zero-initialised, moved by the pre-training on the KB
    assert not recorder.changed("inserts.") and not recorder.changed("backbone.") and recorder.changed("heads.")
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["features_cached"] is True  # frozen backbone + frozen adapter: features are cached
    session = load_run(run)
    prepared = prepared_for(session.cfg, session)
    fused = probs(session.cfg, session.model, prepared)
    assert torch.allclose(probs(session.cfg, recorder.model, prepared), fused, atol=1e-6)
    with torch.no_grad():
        session.model.inserts["knowledge_adapter"].adapters["1"].up.weight.zero_()
        session.model.inserts["knowledge_adapter"].adapters["1"].up.bias.zero_()
    assert not torch.allclose(probs(session.cfg, session.model, prepared), fused)  # fusing the adapter changes outputs
    again = build_session(build_run_config(str(task), "frozen", [*COMMON, module]))  # cached per (KB, backbone): no retraining
    assert "pre-trained" not in capsys.readouterr().out
    assert again.model.inserts["knowledge_adapter"].pretraining == report
    tuned = Recorder()
    train(build_run_config(str(task), "frozen", [*COMMON, module.replace("layers: [-1]", "layers: [-1], trainable: true")]),
          tmp_path / "tuned", callbacks=[tuned])
    assert tuned.changed("inserts.knowledge_adapter") and not tuned.changed("backbone.")


def test_knowledge_adapter_rejects_a_kb_derived_from_a_task(text_task):
    from mmsft.errors import UserError

    task, _ = text_task
    with pytest.raises(UserError, match=r"model.modules\[0\].options.kb: KB 'task_labels' is built from a task's rows"):
        build_run_config(str(task), "frozen", ["model.modules=[{type: knowledge_adapter, options: {kb: task_labels, targets: [label]}}]"])
    with pytest.raises(UserError, match=r"model.modules\[0\].options.objective: unknown knowledge-adapter objective"):
        build_run_config(str(task), "frozen", ["model.modules=[{type: knowledge_adapter, options: {kb: icd10, objective: chapters}}]"])


def reply_task(root: Path, backbone: Path, rows: list[tuple[str, str, str]]) -> Path:
    import csv

    (root / "data").mkdir(parents=True)
    with (root / "data" / "replies.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["instruction", "response", "intent", "category"])
        writer.writerows(rows)
    task = root / "reply.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: reply_kb
        kind: generation
        data:
          format: csv
          root: {root / "data"}
          files: {{all: replies.csv}}
          source_column: instruction
          target_column: response
          field_columns: [intent, category]
          split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 1}}
          overlong: drop
          generate: {{max_new_tokens: 8, batch_size: 4}}
        model: {{backbone: {backbone}, max_length: 192}}
        metrics: [bleu, rouge_l, eos_rate]
        train: {{epochs: 1, batch_size: 4, eval_batch_size: 4, lr: 1.0e-2, log_every_steps: 1}}
        """))
    return task


TOY_REPLIES = {"cancel_order": "I can cancel order {{Order Number}} on {{Website URL}}.",
               "track_order": "Track order {{Order Number}} in {{Online Order Interaction}}.",
               "get_refund": "Refunds for {{Order Number}} take 14 days."}


def test_generation_puts_passages_in_the_prompt_scores_groundedness_and_reloads(tmp_path, tiny_llama, isolated):
    rows = [(f"please {intent.replace('_', ' ')} number {i}", f"{TOY_REPLIES[intent]} Ref {i}.", intent, "ORDER")
            for i, intent in enumerate(list(TOY_REPLIES) * 10)]
    task = reply_task(tmp_path, tiny_llama, rows)
    knowledge = "knowledge={kb: task_replies, retrieval: {method: bm25, k: 1, budget: 48}}"
    run = train(build_run_config(str(task), "lora", [*COMMON, knowledge]), tmp_path / "run")
    session = load_run(run)
    prepared = prepared_for(session.cfg, session)
    token = session.processor.convert_tokens_to_ids("<|knowledge|>")
    train_items = prepared.splits["train"]
    assert all(token in it["prompt_ids"] for it in train_items)
    assert all(it["reference"] not in it["knowledge"][0] for it in train_items)  # never its own reply
    test = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("supported_content_share", "hallucinated_placeholder_rate", "knowledge_f1", "rouge_l"):
        assert key in test
    saved = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert all(r["knowledge"] for r in saved)
    assert evaluate_run(run).predictions == [r["prediction"] for r in saved]  # save -> load -> same outputs
    out = predict_run(run, ["please cancel order number 99"])[0]
    assert out["knowledge"][0]["passage"].startswith("cancel order / ORDER: I can cancel order")


# -- one short real run per module -----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("knowledge_cache")


@pytest.fixture
def phrasebank(tmp_path, real_cache, monkeypatch) -> Path:
    """90 real Financial PhraseBank sentences (copied into tmp_path) on MiniLM-L6."""
    source = SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt"
    if not source.is_file():
        pytest.skip("shared data missing")
    monkeypatch.setenv("MMSFT_CACHE", str(real_cache))
    monkeypatch.setenv("MMSFT_RUNS_DIR", str(tmp_path / "runs"))
    lines = source.read_bytes().decode("latin-1").splitlines()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fpb.txt").write_text("\n".join(lines[::50][:90]) + "\n", encoding="latin-1")
    task = tmp_path / "fpb.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: fpb_small
        kind: text_classification
        data: {{format: phrasebank, root: {tmp_path / "data"}, files: {{all: fpb.txt}}, encoding: latin-1,
                labels: [negative, neutral, positive], split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 1}}}}
        model: {{backbone: minilm-l6, max_length: 96}}
        train: {{epochs: 2, batch_size: 16, eval_batch_size: 32, lr: 3.0e-3}}
        """))
    return task


REAL = {
    "retrieved_segments": ["knowledge={kb: loughran_mcdonald, retrieval: {method: bm25, k: 3, budget: 24}}"],
    "knowledge_adapter": ["model.modules=[{type: knowledge_adapter, options: {kb: loughran_mcdonald, objective: flags, input: id, "
                          "targets: [negative, positive, uncertainty, litigious, constraining], steps: 30, size: 16}}]"],
    "entity_memory": ["knowledge={kb: loughran_mcdonald, inject: []}", "model.modules=[{type: entity_memory}]"],
}


@pytest.mark.parametrize("module", sorted(REAL))
def test_short_real_run(module, phrasebank, tmp_path):
    run = train(build_run_config(str(phrasebank), "frozen", [*COMMON, *REAL[module]]), tmp_path / "run")
    summary = json.loads((run / "metrics.json").read_text())
    assert 0 <= summary["test"]["accuracy"] <= 1 and summary["steps"] > 0
    row = predict_run(run, ["Operating loss widened and the company faces litigation ."])[0]
    if module == "retrieved_segments":
        assert {h["id"] for h in row["knowledge"]} >= {"loss", "litigation"}
    if module == "entity_memory":
        assert row["linked"][:2] == ["loss", "litigation"]


def test_short_real_reply_run_with_the_policy_kb(tmp_path, tiny_llama, isolated):
    import csv

    source = SHARED_DATA / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    if not source.is_file():
        pytest.skip("shared data missing")
    with source.open(encoding="utf-8", newline="") as fh:
        records = [r for r in csv.DictReader(fh) if len(r["response"]) < 400][:40]
    task = reply_task(tmp_path, tiny_llama, [(r["instruction"], r["response"], r["intent"], r["category"]) for r in records])
    run = train(build_run_config(str(task), "lora", [*COMMON, "knowledge={kb: task_replies, retrieval: {method: hybrid, k: 1, budget: 64}}"]),
                tmp_path / "run")
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert 0 <= test["hallucinated_placeholder_rate"] <= 1 and 0 <= test["supported_content_share"] <= 1
