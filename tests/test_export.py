"""``mmsft export RUN --format hf|onnx``: each export is loaded in a subprocess where ``import mmsft`` fails
(transformers / onnxruntime / torchvision alone) and must give mmsft's own predictions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import mmsft
from conftest import write_toy_task
from gen_fixtures import *  # noqa: F401,F403  (tiny_llama, smol_path)
from gen_fixtures import toy_mt_yaml
from mmsft.cli.main import main
from mmsft.errors import UserError

TEXTS = ["the company said profit rose", "sales fell sharply", "record sales", "ok",
         " ".join(["the quarter results were weak demand"] * 12)]  # longer than max_length 32: truncated alike

NO_MMSFT = "import sys\nsys.modules['mmsft'] = None  # the export must load without mmsft\n"


def alone(code: str, *args) -> object:
    """Run ``code`` in a fresh interpreter where mmsft cannot be imported; returns the JSON it prints last."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NO_MMSFT + textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=str(args[0]) if args else None, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_export(run, fmt, out, capsys) -> dict:
    capsys.readouterr()
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    printed = json.loads(text[text.index("{"):])  # one (indented) JSON summary
    assert printed["export"] == str(out) and printed["format"] == fmt
    return json.loads((out / "export.json").read_text())


def train_run(root, name, task, adapter, overrides):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_RUNS_DIR", str(root / "runs"))
        mp.setenv("MMSFT_CACHE", str(root / "cache"))
        return mmsft.train(task, adapter=adapter, overrides=overrides, output=root / name)


# -- text classification -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_runs(tmp_path_factory, tiny_bert):
    """pooling -> a tiny BERT + LoRA run trained briefly with it (each trained once per module; mean: the
    appended pooling block)."""
    runs = {}

    def get(pooling: str):
        if pooling not in runs:
            root = tmp_path_factory.mktemp(f"export-{pooling}")
            runs[pooling] = train_run(root, "run", write_toy_task(root, tiny_bert), "lora",
                                      {"train.epochs": 2, "train.lr": 5e-3, "model.heads.classification.options.pooling": pooling})
        return runs[pooling]
    return get


def mmsft_logits(run):
    """The composed model's logits on TEXTS (mmsft's tokenization: truncation at model.max_length)."""
    import torch

    from mmsft.pipeline import load_run

    session = load_run(run.path)
    batch = session.processor(TEXTS, truncation=True, max_length=session.cfg.model.max_length, padding=True, return_tensors="pt")
    head = next(iter(session.cfg.model.heads))
    with torch.no_grad():
        return session.model(**dict(batch), heads=[head])["heads"][head]["logits"].float()


def assert_matches_run(run, logits: list, labels: list):
    import torch

    got, ref = torch.tensor(logits), mmsft_logits(run)
    assert got.shape == ref.shape == (len(TEXTS), 2)
    assert (got - ref).abs().max() < 1e-4 * max(1.0, float(ref.abs().max())), (got, ref)
    ours = run.predict(TEXTS, batch_size=2)
    assert labels == [r["label"] for r in ours]
    probs = got.softmax(-1)
    for row, p in zip(ours, probs):
        assert [row["scores"][n] for n in ("neg", "pos")] == pytest.approx(p.tolist(), abs=2e-4)


HF_CLASSIFIER = """
    import json
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**tok(texts, truncation=True, padding=True, return_tensors="pt")).logits
    print(json.dumps({"logits": logits.tolist(), "labels": [model.config.id2label[int(i)] for i in logits.argmax(-1)],
                      "max_length": tok.model_max_length, "arch": type(model).__name__}))
"""


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_hf_text_classification_loads_with_transformers_alone(text_runs, pooling, tmp_path, capsys):
    text_run = text_runs(pooling)
    record = cli_export(text_run.path, "hf", tmp_path / "hf", capsys)
    assert record["pooling"] == pooling and record["pooling_block"] == (pooling == "mean")
    assert record["max_abs_logit_diff"] < 1e-4 and record["test"] == text_run.metrics["test"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(os.listdir(tmp_path / "hf"))
    out = alone(HF_CLASSIFIER, tmp_path / "hf", json.dumps(TEXTS))
    assert out["arch"] == "BertForSequenceClassification" and out["max_length"] == 32
    assert_matches_run(text_run, out["logits"], out["labels"])


ONNX_CLASSIFIER = """
    import json
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    tok = AutoTokenizer.from_pretrained(folder)
    labels = json.load(open(f"{folder}/labels.json"))
    sess = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    enc = tok(texts, truncation=True, padding=True, return_tensors="np")
    logits = sess.run(["logits"], {n: enc[n].astype(np.int64) for n in names})[0]
    print(json.dumps({"logits": logits.tolist(), "labels": [labels[int(i)] for i in logits.argmax(-1)], "inputs": names}))
"""


def test_onnx_text_classification_runs_in_onnxruntime_alone(text_runs, tmp_path, capsys):
    text_run = text_runs("mean")  # one pooling: the graph is the composed model itself
    record = cli_export(text_run.path, "onnx", tmp_path / "onnx", capsys)
    assert record["labels"] == ["neg", "pos"] and record["max_abs_logit_diff"] < 1e-3
    out = alone(ONNX_CLASSIFIER, tmp_path / "onnx", json.dumps(TEXTS))
    assert set(out["inputs"]) <= {"input_ids", "attention_mask", "token_type_ids"}
    assert_matches_run(text_run, out["logits"], out["labels"])


def test_export_refusals_leave_nothing(text_runs, tmp_path, tiny_bert, capsys):
    text_run = text_runs("cls")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        text_run.export("hf", out=tmp_path / "full")
    with pytest.raises(UserError, match="unknown export format"):
        text_run.export("tflite", out=tmp_path / "t")
    assert main(["export", str(text_run.path), "--format", "hf", "--out", str(tmp_path / "full")]) == 2
    hidden = train_run(tmp_path, "hidden", write_toy_task(tmp_path, tiny_bert, rows=40), "lora",
                       {"train.max_steps": 1, "model.heads.classification.options.hidden": 8})
    with pytest.raises(UserError, match="hidden layer"):
        hidden.export("hf", out=tmp_path / "h")
    assert not (tmp_path / "h").exists() and not (tmp_path / "t").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("h.", ".h", "t."))] == []  # no temp folder left


# -- generation --------------------------------------------------------------------------------------
HF_CAUSAL = """
    import json
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for text in texts:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        gen = model.generate(**ids)  # decoding from generation_config.json
        new = gen[0, ids["input_ids"].shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        out.append(tok.decode(new, skip_special_tokens=True).strip())
    config = model.generation_config
    print(json.dumps({"outputs": out, "max_new_tokens": config.max_new_tokens, "repetition_penalty": config.repetition_penalty}))
"""


@pytest.mark.parametrize("template", ["role", "plain", "chat"])
def test_hf_generation_greedy_equals_mmsft(template, tmp_path, tiny_llama, capsys):
    task = toy_mt_yaml(tmp_path, tiny_llama)
    extra = {"data.template": template} | ({"data.system": "You translate."} if template != "plain" else {})
    # decoding settings travel in generation_config.json; the penalty keeps the random model off "\n\n\n..."
    extra["data.generate.repetition_penalty"] = 1.5
    # a low learning rate: a few steps at the toy task's 1e-2 teach the random model to stop at once
    run = train_run(tmp_path, "run", task, "lora", {"train.max_steps": 3, "train.lr": 1e-4, **extra})
    record = cli_export(run.path, "hf", tmp_path / "hf", capsys)
    assert record["template"] == template and record["probes_compared"] == 3 and record["prompt_fields_to_fill"] == []
    sources = ["the cat sees the dog", "the woman likes the house", "a child"]
    ours = [row["output"] for row in run.predict(sources, batch_size=1)]
    out = alone(HF_CAUSAL, tmp_path / "hf", json.dumps(sources))
    assert out["max_new_tokens"] == 8 and out["repetition_penalty"] == pytest.approx(1.5)
    assert out["outputs"] == ours
    assert any(ours), "the tiny model generated nothing: the comparison would prove little"
    if template == "plain":
        with pytest.raises(UserError, match="exports as hf"):
            run.export("onnx", out=tmp_path / "onnx")


# -- detection ---------------------------------------------------------------------------------------
TORCHVISION_DETECTOR = """
    import json
    folder, images = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, folder)
    from load_torchvision import load, predict
    model, config = load(folder)
    print(json.dumps(predict(model, config, images, score_thresh=0.0)))
"""


def test_hf_detection_loads_with_torchvision_alone(tmp_path, capsys):
    from task_fixtures import VEHICLES, small_yolo

    if not VEHICLES.is_dir():
        pytest.skip("no shared Vehicles-OpenImages copy")
    root = small_yolo(tmp_path / "data", n_train=3, n_eval=2)
    task = tmp_path / "det.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: det
        kind: detection
        data: {{root: {root}, source: data.yaml, splits: {{train: train, validation: valid, test: test}}, image_size: 160,
                augment: {{hflip: 0.0, iou_crop: 0.0, color_jitter: false}}}}
        model: {{backbone: mobilenet-v2, heads: {{detection: {{type: fcos, options: {{channels: 64, detections_per_img: 20}}}}}}}}
        metrics: [detection_map]
        train: {{max_steps: 2, batch_size: 3, eval_batch_size: 4, lr: 3.0e-4, head_lr: 3.0e-3}}
        """))
    run = train_run(tmp_path, "run", task, None, {})
    record = cli_export(run.path, "hf", tmp_path / "hf", capsys)
    assert record["arch"] == "fcos" and record["max_abs_diff"] <= 1e-2
    images = [str(p) for p in sorted((root / "test" / "images").glob("*.jpg"))]
    theirs = alone(TORCHVISION_DETECTOR, tmp_path / "hf", json.dumps(images))
    ours = run.predict(images, overrides={"model.heads.detection.options.predict_score_thresh": 0.0})
    assert sum(len(r["boxes"]) for r in ours) > 0
    for a, b in zip(ours, theirs):
        assert len(a["boxes"]) == len(b["boxes"])
        for x, y in zip(a["boxes"], b["boxes"]):
            assert x["label"] == y["label"] and x["score"] == pytest.approx(y["score"], abs=2e-3)
            assert x["box_xyxy"] == pytest.approx(y["box_xyxy"], abs=0.5)
