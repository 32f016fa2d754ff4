"""The composed model, peft-style: every adapter preset x every task kind (and the bottleneck module)
on tiny models trains exactly what it should, saves, and reloads in a fresh process to the same
outputs; a module changes what ``eval`` and ``predict`` produce for every kind; LoRA merges."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gen_fixtures import *  # noqa: F401,F403  (tiny_llama, smol_path)
from gen_fixtures import toy_mt_yaml
from task_fixtures import VEHICLES, small_yolo, vehicle_crops
from mmsft.pipeline import evaluate_run, load_run, predict_run, train
from mmsft.spec import build_run_config
from mmsft.training.callbacks import Callback

BOTTLENECK = "model.modules=[{type: bottleneck_adapter, options: {layers: [-1], size: 8}}]"
# (kind, adapter presets, extra overrides): every preset of every kind, plus the module under two adapters each
TEST_CASES = [
    ("text", "full", []), ("text", "lora", []), ("text", "dora", []), ("text", "frozen", []), ("text", "frozen_top2", []),
    ("text", "frozen_top2,lora", []), ("text", "lora", [BOTTLENECK]), ("text", "frozen", [BOTTLENECK]),
    ("generation", "full", []), ("generation", "lora", []), ("generation", "frozen_top2", []), ("generation", "frozen", [BOTTLENECK]), ("generation", "lora", [BOTTLENECK]),
    ("detection", "detector_top3", []), ("detection", "detector_full", []), ("detection", "detector_frozen", []),
    ("detection", "detector_lora", []), ("detection", "detector_top3", [BOTTLENECK]),
    ("image", "full", []), ("image", "lora", []), ("image", "frozen", []), ("image", "frozen", [BOTTLENECK]),
]
UNUSED = (".pooler.",)  # trainable but outside the forward pass (BERT's pooler under mean pooling): no gradient
COMMON = ["train.max_steps=3", "train.early_stopping.restore_best=false", "train.log_every_steps=1", "train.threads=1"]


def _case_id(case) -> str:
    kind, adapters, extra = case
    return f"{kind}-{adapters.replace(',', '+')}" + ("-module" if extra else "")


class Recorder(Callback):
    """Parameters and buffers before and after training, and the trained model object itself."""

    def on_train_begin(self, runner, state):
        self.model = runner.accelerator.unwrap_model(runner.model)
        self.before = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_end(self, runner, state):
        self.after = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        self.params = {n for n, _ in self.model.named_parameters()}


def _tasks(root: Path, tiny_bert: Path, tiny_llama: Path) -> dict:
    """kind -> (task YAML, predict inputs)."""
    from conftest import write_toy_csv

    (root / "text").mkdir(parents=True)
    write_toy_csv(root / "text" / "toy.csv", n=40)
    text = root / "text.yaml"
    text.write_text(textwrap.dedent(f"""\
        name: toy
        kind: text_classification
        data: {{format: csv, root: {root / "text"}, files: {{all: toy.csv}}, labels: [neg, pos],
                split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 1}}}}
        model: {{backbone: {tiny_bert}, max_length: 32}}
        train: {{batch_size: 8, eval_batch_size: 16, lr: 1.0e-3}}
        """))
    (root / "gen").mkdir()
    generation = toy_mt_yaml(root / "gen", tiny_llama, n_train=16)
    small_yolo(root / "det", n_train=4, n_eval=2)
    detection = root / "det.yaml"
    detection.write_text(textwrap.dedent(f"""\
        name: det
        kind: detection
        data: {{root: {root / "det"}, source: data.yaml, splits: {{train: train, validation: valid, test: test}}, image_size: 128,
                augment: {{hflip: 0.0, iou_crop: 0.0, color_jitter: false}}}}
        model: {{backbone: mobilenet-v2, heads: {{detection: {{type: fcos, options: {{channels: 32, extra_levels: 1}}}}}}}}
        metrics: [detection_map]
        train: {{batch_size: 2, eval_batch_size: 4}}
        """))
    vehicle_crops(root / "crops", {"train": 4, "val": 2, "test": 2})
    image = root / "image.yaml"
    image.write_text(textwrap.dedent(f"""\
        name: crops
        kind: image_classification
        data: {{root: {root / "crops"}, source: ., image_size: 64}}
        model: {{backbone: mobilenet-v2}}
        train: {{batch_size: 4, eval_batch_size: 8, lr: 1.0e-3}}
        """))
    test_image = sorted((root / "det" / "test" / "images").glob("*.jpg"))[0]
    crop = sorted((root / "crops" / "test" / "Bus").glob("*.jpg"))[0]
    return {"text": (text, ["great profit rose 3", "terrible loss widened 4"]),
            "generation": (generation, ["the cat sees the dog"]),
            "detection": (detection, [str(test_image)]), "image": (image, [str(crop)])}


def _comparable(kind: str, rows: list[dict]) -> list:
    if kind == "detection":
        return [r["boxes"] for r in rows]
    return [{k: v for k, v in r.items() if k != "input"} for r in rows]


FRESH = """
import json, sys
from mmsft.pipeline import predict_run
cases = json.loads(sys.argv[1])
print(json.dumps({run: predict_run(run, inputs, out_dir=out) for run, inputs, out in cases}))
"""


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, tiny_bert, tiny_llama):
    """Train every case once; predict in process with the trained model object and in one fresh process."""
    from mmsft.registry import KINDS

    if not (VEHICLES / "data.yaml").is_file():
        pytest.skip("shared data missing")
    root = tmp_path_factory.mktemp("matrix")
    tasks = _tasks(root / "tasks", tiny_bert, tiny_llama)
    mp = pytest.MonkeyPatch()
    mp.setenv("MMSFT_CACHE", str(root / "cache"))
    results = {}
    try:
        for case in TEST_CASES:
            kind, adapters, extra = case
            task, inputs = tasks[kind]
            recorder = Recorder()
            run = train(build_run_config(str(task), adapters, [*COMMON, *extra]), root / _case_id(case), callbacks=[recorder])
            session = load_run(run)  # the processor (tokenizer) and resolved config of the saved run
            rows = KINDS.get(session.cfg.kind).predict(session.cfg, recorder.model, session.processor, inputs,
                                                      out_dir=root / "in_process" / _case_id(case))
            results[_case_id(case)] = {"run": str(run), "recorder": recorder, "in_process": rows, "inputs": inputs}
        args = json.dumps([[r["run"], r["inputs"], str(Path(r["run"]) / "fresh")] for r in results.values()])
        out = subprocess.run([sys.executable, "-c", FRESH, args], capture_output=True, text=True,
                             env={**__import__("os").environ, "MMSFT_CACHE": str(root / "cache")})
        assert out.returncode == 0, out.stderr[-3000:]
        fresh = json.loads(out.stdout.strip().splitlines()[-1])
        for r in results.values():
            r["fresh"] = fresh[r["run"]]
    finally:
        mp.undo()
    return results


@pytest.mark.parametrize("case", TEST_CASES, ids=_case_id)
def test_training_changes_exactly_the_trainable_parameters(matrix, case):
    rec = matrix[_case_id(case)]["recorder"]
    changed = {k for k in rec.params if not torch.equal(rec.before[k], rec.after[k])}
    assert changed <= rec.trainable, sorted(changed - rec.trainable)[:5]
    missing = {n for n in rec.trainable - changed if not any(u in n for u in UNUSED)}
    assert not missing, sorted(missing)[:5]
    if "backbone" in rec.model._keep_eval:  # nothing of the backbone trains: its buffers (BN statistics) stay too
        assert all(torch.equal(rec.before[k], rec.after[k]) for k in rec.before if k.startswith("backbone."))
    adapters = case[1]
    backbone_trained = {n for n in rec.trainable if n.startswith("backbone.")}
    if adapters in ("frozen", "detector_frozen"):
        assert not backbone_trained
    if "lora" in adapters or adapters == "dora":
        assert any("lora_" in n for n in backbone_trained)
    if case[2]:
        assert any(n.startswith("inserts.") for n in changed)


@pytest.mark.parametrize("case", TEST_CASES, ids=_case_id)
def test_saved_run_reloads_in_a_fresh_process_to_the_same_outputs(matrix, case):
    r = matrix[_case_id(case)]
    assert _comparable(case[0], r["fresh"]) == _comparable(case[0], r["in_process"])
    saved = Path(r["run"]) / "model"
    for name in case[1].split(","):  # each adapter saves what it trained; an all-frozen backbone saves nothing
        assert (saved / "adapters" / name).exists() == (name not in ("frozen", "detector_frozen")), name
    assert (saved / "modules.safetensors").is_file() == bool(case[2])


# -- a module changes what eval and predict produce, for every kind --------------------------------
def _with_module_weights(run: Path, copy: Path, fill) -> Path:
    import shutil

    shutil.copytree(run, copy)
    state = load_file(str(copy / "model" / "modules.safetensors"))
    torch.manual_seed(0)
    save_file({k: fill(v) if ".up." in k else v for k, v in state.items()}, str(copy / "model" / "modules.safetensors"))
    return copy


@pytest.mark.parametrize("kind", ["text", "generation", "detection", "image"])
def test_module_changes_eval_and_predict(matrix, kind, tmp_path):
    case = next(c for c in TEST_CASES if c[0] == kind and c[2])
    r = matrix[_case_id(case)]
    run = Path(r["run"])
    identity = _with_module_weights(run, tmp_path / "identity", torch.zeros_like)
    strong = _with_module_weights(run, tmp_path / "strong", lambda v: torch.randn_like(v) * 2.0)
    # every box counts (a tiny, briefly trained detector scores below the default display threshold)
    overrides = ["model.heads.detection.options.predict_score_thresh=0.0"] if kind == "detection" else []
    outputs = {}
    for name, folder in (("identity", identity), ("strong", strong)):
        evaluated = evaluate_run(folder)
        probs = evaluated.extra.get("probs")
        outputs[name] = (probs.tolist() if probs is not None else json.dumps(evaluated.predictions, default=lambda t: t.tolist()),
                         _comparable(kind, predict_run(folder, r["inputs"], out_dir=folder / "pred", overrides=overrides)))
    assert outputs["identity"][0] != outputs["strong"][0]  # eval goes through the module
    assert outputs["identity"][1] != outputs["strong"][1]  # so does predict (generation: through generate)


# -- merging LoRA into the base --------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["text-lora", "text-dora", "generation-lora"])
def test_lora_merges_into_plain_weights_with_the_same_outputs(matrix, case_id, tmp_path, capsys):
    from mmsft.cli.main import main

    r = matrix[case_id]
    merged = tmp_path / "merged"
    assert main(["merge-adapters", r["run"], "--out", str(merged)]) == 0
    capsys.readouterr()
    weights = merged / "model" / "adapters" / "merged"
    assert (weights / "config.json").is_file() and (weights / "model.safetensors").is_file()
    assert not any("lora" in k for k in load_file(str(weights / "model.safetensors")))
    a, b = evaluate_run(r["run"]), evaluate_run(merged)
    if "probs" in a.extra:
        assert torch.allclose(a.extra["probs"], b.extra["probs"], atol=1e-5)
    else:
        assert a.predictions == b.predictions and a.metrics["loss"] == pytest.approx(b.metrics["loss"], rel=1e-4)
    assert main(["merge-adapters", str(matrix["text-full"]["run"]), "--out", str(tmp_path / "again")]) == 2
    assert "no adapter that merges" in capsys.readouterr().err


def test_features_give_the_hidden_states_of_requested_blocks_and_extra_keys_reach_modules(tiny_bert):
    """The feature interface returns chosen blocks' outputs on request, and a module that declares a
    batch key receives it (the seam for retrieved passages or an image beside a text)."""
    from dataclasses import dataclass

    from mmsft.models import ComposedModel, FeatureRequest
    from mmsft.models.modules import ModelModule
    from mmsft.models.text import TextBackbone

    @dataclass
    class GateOptions:
        trainable: bool = True

    class Gate(ModelModule):
        """Multiplies the last block's output by a per-sample factor from the batch."""

        Options = GateOptions
        batch_keys = ("gate",)

        def points(self):
            return [1]

        def reads_layers(self):
            return [0]

        def transform(self, index, hidden, context):
            self.saw_layer0 = context.hidden.get(0) is not None
            return hidden * context.batch["gate"][:, None, None]

    backbone, tokenizer = TextBackbone.load(str(tiny_bert))
    model = ComposedModel(backbone, {"gate": Gate(backbone, GateOptions())}, {}).eval()
    batch = dict(tokenizer(["a b c", "d e"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        plain = model.features({**batch, "gate": torch.ones(2)}, FeatureRequest(hidden_layers=(0, -1)))
        halved = model.features({**batch, "gate": torch.tensor([0.5, 1.0])})
    assert sorted(plain.hidden) == [0, 1] and plain.hidden[0].shape == plain.tokens.shape
    assert model.inserts["gate"].saw_layer0
    assert torch.allclose(halved.tokens[1], plain.tokens[1]) and not torch.allclose(halved.tokens[0], plain.tokens[0])
    assert not backbone.blocks()[0]._forward_hooks or len(backbone.blocks()[0]._forward_hooks) == 1  # request hooks removed
