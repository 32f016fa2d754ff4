"""mmsft compress on tiny models: pruned heads really gone (and equal to gating them off), layer
dropping, magnitude pruning, int8 (both backends) within tolerance and reloading exactly, the
backend probe recorded, ONNX parity, run folders that eval / predict accept (an LM included)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from derive_fixtures import *  # noqa: F401,F403
from derive_fixtures import toy_task_yaml, train_toy
from gen_fixtures import smol_path, tiny_llama, toy_mt_yaml  # noqa: F401
from mmsft.cli.main import main
from mmsft.compress.run import Compressor, compress_run, sample_batches
from mmsft.compress.structure import HeadGates, head_counts
from mmsft.pipeline import evaluate_run, load_run, predict_run

TEXTS = ["great results this quarter", "sales fell and the loss widened", "the company said its results were"]


@pytest.fixture(scope="module")
def toy(derive_env, tiny_bert4):
    task = toy_task_yaml(derive_env, tiny_bert4)
    return {"task": task, "run": train_toy(task, derive_env / "run", "full", ["train.epochs=3"])}


def _loaded(run):
    session = load_run(run)
    session.data = session.kind.load_data(session.cfg)
    prepared = session.kind.prepare(session.cfg, session.processor, session.data)
    return session, prepared


def _logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"})["heads"]["classification"]["logits"]


def test_pruned_heads_are_gone_and_equal_to_gating_them_off(toy, tmp_path):
    out = compress_run(toy["run"], tmp_path / "heads", prune=["heads:0.5"])
    record = json.loads((out / "compress.json").read_text())["steps"][0]
    assert record["heads_before"] == 12 and record["heads_after"] == 6 and min(record["heads_per_block"]) >= 1
    pruned = load_run(out).model
    kept = load_run(out).cfg.adapters["compressed"].options.heads
    for i, block in enumerate(pruned.backbone.blocks()):
        n = len(kept.get(str(i), range(4)))
        assert block.attention.self.query.out_features == n * 8 and block.attention.output.dense.in_features == n * 8
    saved = load_file(str(out / "model" / "adapters" / "compressed" / "compressed.safetensors"))
    assert saved["encoder.layer.0.attention.self.query.weight"].shape[0] == 8 * len(kept.get("0", range(4)))
    # the least important heads went: every kept head scores at least as high as every removed one (per-block floor aside)
    importance = record["importance"]
    removed = [importance[b][h] for b in range(3) for h in range(4) if h not in kept.get(str(b), range(4))]
    survivors = [importance[b][h] for b in range(3) for h in kept.get(str(b), range(4)) if len(kept.get(str(b), range(4))) > 1]
    assert max(removed) <= min(survivors)
    # pruning == the original model with those heads' gates at 0
    original, prepared = _loaded(toy["run"])
    batch = sample_batches(prepared, "test", 1, 16)[0]
    gates = HeadGates(original.model.backbone)
    with torch.no_grad():
        for b, gate in enumerate(gates.gates):
            gate.zero_()
            gate[kept.get(str(b), list(range(4)))] = 1.0
    gated = _logits(original.model, batch)
    gates.remove()
    assert torch.allclose(_logits(pruned, batch), gated, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in original.model.parameters())


def test_layer_dropping_keeps_the_first_blocks_and_can_refit(toy, tmp_path):
    plain = compress_run(toy["run"], tmp_path / "layers", prune=["layers:1"])
    session = load_run(plain)
    assert len(session.model.backbone.blocks()) == 2 and session.cfg.adapters["compressed"].options.blocks == 2
    original, prepared = _loaded(toy["run"])
    batch = sample_batches(prepared, "test", 1, 16)[0]
    del original.model.backbone.blocks()[2:]
    assert torch.allclose(_logits(session.model, batch), _logits(original.model, batch), atol=1e-6)
    refit = compress_run(toy["run"], tmp_path / "refit", prune=["layers:1"], refit_steps=3)
    steps = json.loads((refit / "compress.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["layers_1", "refit_3"]
    assert not torch.allclose(_logits(load_run(refit).model, batch), _logits(session.model, batch))


def test_magnitude_pruning_zeroes_the_requested_share(toy, tmp_path):
    out = compress_run(toy["run"], tmp_path / "mag", prune=["magnitude:0.6"])
    saved = load_file(str(out / "model" / "adapters" / "compressed" / "compressed.safetensors"))
    weights = [v for k, v in saved.items() if k.startswith("encoder.layer.") and k.endswith(".weight") and v.ndim == 2]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zero == pytest.approx(0.6, abs=0.01)
    assert json.loads((out / "compress.json").read_text())["steps"][0]["sparsity"] == pytest.approx(zero, abs=1e-3)


@pytest.mark.parametrize("mode,backend", [("int8_dynamic", "torch.ao"), ("int8_dynamic", "torchao"), ("int8_static", "torchao")])
def test_quantized_outputs_within_tolerance_and_reload_exactly(toy, tmp_path, mode, backend):
    from mmsft.atomic import atomic_folder
    from mmsft.derived import fill_run
    from mmsft.spec import AdapterSpec

    session, prepared = _loaded(toy["run"])
    batch = sample_batches(prepared, "test", 1, 24)[0]
    reference = _logits(session.model, batch)
    work = Compressor(session, prepared, calibration_batches=4)
    info = work.quantize(mode, backend)
    assert info["backend"] == backend and info["layers"] == 18
    quantized = _logits(work.model, batch)
    assert (quantized - reference).abs().max() < 0.05 * reference.abs().max() + 0.02
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    session.cfg.adapters = {"compressed": AdapterSpec(method="compressed", options=work.options)}
    with atomic_folder(tmp_path / "q") as folder:
        fill_run(folder, session, work.model, {"test": {}}, {"compress.json": work.record})
    assert torch.equal(_logits(load_run(tmp_path / "q").model, batch), quantized)  # rebuilt from the saved int8, not re-quantized
    saved = load_file(str(tmp_path / "q" / "model" / "adapters" / "compressed" / "compressed.safetensors"))
    assert saved["encoder.layer.0.attention.self.query.int8.weight_int8"].dtype == torch.int8
    assert ("encoder.layer.0.attention.self.query.int8.act_scale" in saved) == (mode == "int8_static")


def test_backend_probe_is_recorded_and_the_cli_run_loads_in_eval_and_predict(toy, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compress", str(toy["run"]), "--prune", "heads:0.25", "--quantize", "int8_dynamic", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((out / "compress.json").read_text())["quantize"]
    assert set(record["timings_ms"]) == {"torchao", "torch.ao"} and record["backend"] == summary["quantize_backend"]
    faster = min(record["timings_ms"], key=record["timings_ms"].get)
    assert record["backend"] == faster or record["timings_ms"]["torchao"] <= 1.05 * record["timings_ms"]["torch.ao"]
    assert main(["eval", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary["test"]["accuracy"]
    assert main(["predict", str(out), TEXTS[0]]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in ("neg", "pos")


def test_onnx_export_matches_pytorch(toy, tmp_path):
    from mmsft.compress import onnx_export

    out = compress_run(toy["run"], tmp_path / "onnx", prune=["heads:0.25"], export="onnx")
    record = json.loads((out / "compress.json").read_text())["onnx"]
    assert record["parity"]["ok"] and record["parity"]["argmax_agreement"] == 1.0 and record["parity"]["max_abs_diff"] < 1e-4
    session = load_run(out)
    enc = session.processor(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    ort = onnx_export.run(onnx_export.session(out / "model" / "model.onnx"), dict(enc))
    with torch.no_grad():
        torch_logits = session.model(**enc)["heads"]["classification"]["logits"]
    assert torch.allclose(torch.from_numpy(ort), torch_logits, atol=1e-4)
    assert sum(head_counts(session.model.backbone)) == 9  # the exported graph is the pruned model


def test_bad_compress_input_exits_2_and_writes_nothing(toy, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compress", str(toy["run"]), "--prune", "heads:1.5", "--out", str(out)]) == 2
    assert "heads takes a share in (0, 1)" in capsys.readouterr().err
    assert main(["compress", str(toy["run"]), "--prune", "head", "--out", str(out)]) == 2
    assert "Did you mean 'heads'" in capsys.readouterr().err
    assert main(["compress", str(toy["run"]), "--out", str(out)]) == 2
    assert main(["compress", str(toy["run"]), "--prune", "layers:3", "--out", str(out)]) == 2
    assert not out.exists()


def test_a_compressed_lm_generates_through_eval_and_predict(derive_env, tiny_llama, tmp_path, capsys):
    (derive_env / "mt").mkdir(exist_ok=True)
    task = toy_mt_yaml(derive_env / "mt", tiny_llama, n_train=16)
    run = train_toy(task, tmp_path / "lm", "full", ["train.max_steps=2"])
    out = compress_run(run, tmp_path / "lm-c", prune=["layers:1"], quantize="int8_dynamic", backend="torch.ao")
    session = load_run(out)
    assert len(session.model.backbone.blocks()) == 1
    saved = load_file(str(out / "model" / "adapters" / "compressed" / "compressed.safetensors"))
    assert "lm_head.weight" not in saved or "model.embed_tokens.weight" not in saved  # the tied matrix is stored once
    assert "bleu" in evaluate_run(out).metrics
    assert main(["predict", str(out), "the cat sees the dog"]) == 0
    assert "output" in json.loads(capsys.readouterr().out.splitlines()[-1])
    with pytest.raises(Exception, match="ONNX export covers text classification"):
        compress_run(run, tmp_path / "lm-onnx", export="onnx")
