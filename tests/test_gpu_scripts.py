"""The GPU path without a GPU: the bundle step (weights and data really written, sizes checked, fp16
MiniLM close to fp32), the carried-weights folder of the zoo (MMSFT_ZOO_DIR), ``--dry-run``'s steps,
the one-line exit without CUDA, and the CPU smoke mode of the check end to end on a bundle."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT, SHARED_DATA

torch = pytest.importorskip("torch")
sys.path.insert(0, str(PROJECT / "benchmarks"))
import gpu_bundle  # noqa: E402

SCRIPTS = PROJECT / "scripts"
RESULTS = PROJECT / "benchmarks" / "results"
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "financial_phrasebank").is_dir(), reason="needs the shared data")


def run(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("MMSFT_ZOO_DIR", None)
    return subprocess.run(["bash", *map(str, args)], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_bundle") / "text"
    done = run(SCRIPTS / "gpu_bundle.sh", "text", "--out", out, "--skip-wheels")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "total" in done.stdout and "limit 64.0 MiB" in done.stdout
    return out


@pytest.fixture(scope="module")
def vision_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_bundle") / "vision"
    done = run(SCRIPTS / "gpu_bundle.sh", "vision", "--out", out, "--skip-wheels")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_text_bundle_weights_data_and_sizes(text_bundle):
    from safetensors import safe_open
    from transformers import AutoModel, AutoTokenizer

    from mmsft.zoo import ZOO

    manifest = json.loads((text_bundle / "bundle.json").read_text())
    sizes = manifest["bytes"]
    assert set(sizes) >= {"wheels", "zoo", "tokenizers", "data", "total", "working_tree"}
    assert sizes["total"] + sizes["working_tree"] < gpu_bundle.LIMIT and sizes["zoo"] < 48 * 2**20  # fp16: ~43 MiB, not 87
    folder = text_bundle / "zoo" / "minilm-l6"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    data = text_bundle / "data" / "financial_phrasebank"
    assert (data / "Sentences_50Agree.txt").read_bytes() == (SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt").read_bytes()
    assert (data / "License.txt").is_file() and (text_bundle / "tokenizers" / "smollm2-135m" / "tokenizer.json").is_file()
    # loads back as fp32 and gives the fp32 model's sentence embeddings within fp16 rounding
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(gpu_bundle.PROBE + ["Net sales decreased."], padding=True, return_tensors="pt")
    half, full = AutoModel.from_pretrained(folder).eval(), AutoModel.from_pretrained(ZOO.get("minilm-l6").locate()).eval()
    assert next(half.parameters()).dtype == torch.float32
    with torch.no_grad():
        a, b = half(**batch).last_hidden_state, full(**batch).last_hidden_state
    assert (a - b).abs().max() < 5e-3
    assert torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min() > 0.9999
    assert manifest["zoo"]["minilm-l6"]["min_cosine"] > 0.9999


def test_bundle_rerun_reuses_what_is_there(text_bundle):
    weights = text_bundle / "zoo" / "minilm-l6" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    done = run(SCRIPTS / "gpu_bundle.sh", "text", "--out", text_bundle, "--skip-wheels")
    assert done.returncode == 0 and weights.stat().st_mtime_ns == stamp


def test_over_the_limit_fails_clearly(capsys):
    manifest = {"part": "text", "zoo": {}, "bytes": {"wheels": 0, "zoo": 60 * 2**20, "tokenizers": 0, "data": 0,
                                                    "total": 60 * 2**20, "working_tree": 5 * 2**20}}
    assert gpu_bundle.report(manifest, Path("x")) == 1
    assert "over the 64.0 MiB" in capsys.readouterr().err


def test_zoo_uses_carried_weights(vision_bundle, monkeypatch, capsys):
    from mmsft.cli.main import main
    from mmsft.zoo import ZOO, resolve

    monkeypatch.setenv("MMSFT_ZOO_DIR", str(vision_bundle / "zoo"))
    assert ZOO.get("mobilenet-v2").folder() == vision_bundle / "zoo" / "mobilenet-v2"
    resolved = resolve("mobilenet-v2")
    assert resolved.path == str(vision_bundle / "zoo" / "mobilenet-v2") and resolved.entry.name == "mobilenet-v2"
    assert resolve("minilm-l6").path != str(vision_bundle / "zoo" / "minilm-l6")  # not carried: its package
    assert main(["models", "list"]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith("mobilenet-v2"))
    assert "carried" in line
    assert (vision_bundle / "data" / "vehicles_openimages" / "data.yaml").is_file()


@pytest.mark.parametrize("part, expected", [
    ("text", ["install the bundle's wheels offline", "pip install --no-index --no-deps", "--no-build-isolation --quiet -e",
              "gpu_probe.py", "train finance_sentiment --adapter lora", "train finance_sentiment --adapter full",
              "train.mixed_precision=bf16", "tiny causal LM", "toy_mt.yaml", "gpu.md"]),
    ("vision", ["install the bundle's wheels offline", "train traffic_vehicles", "train.epochs=2", "train.device=cuda", "gpu.json"]),
])
def test_dry_run_lists_every_step(part, expected, tmp_path):
    done = run(SCRIPTS / "gpu_check.sh", part, "--dry-run", "--bundle", tmp_path / "none")
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, text
    assert "MISSING: make it with `bash scripts/gpu_bundle.sh" in done.stdout
    assert "MMSFT_ZOO_DIR=" in done.stdout and "MMSFT_DATA_ROOT=" in done.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_without_cuda_one_line_exit_2():
    done = run(SCRIPTS / "gpu_check.sh", "text")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in done.stderr and "--cpu-smoke" in done.stderr


def smoke(part: str, bundle: Path, tmp_path: Path) -> dict:
    before = {p: p.stat().st_mtime_ns for p in RESULTS.glob("gpu.*")}
    out = tmp_path / "report"
    done = run(SCRIPTS / "gpu_check.sh", part, "--cpu-smoke", "--bundle", bundle, "--work", tmp_path / "work", "--out", out)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert {p: p.stat().st_mtime_ns for p in RESULTS.glob("gpu.*")} == before  # the committed results untouched
    report = json.loads((out / "gpu.json").read_text())[part]
    assert set(report) >= {"part", "mode", "measured_at", "command", "device", "probe", "bundle", "steps", "checks", "wall_seconds"}
    assert report["mode"] == "cpu-smoke" and not report["probe"]["problems"]
    assert "CPU SMOKE RUN" in (out / "gpu.md").read_text()
    for check in report["checks"]:
        assert check["status"] == "ok" and check["samples_per_second"] > 0 and check["peak_memory_mb"] > 0, check
        assert check["mixed_precision"] == "no" and check["device"] == "cpu" and check["test"]
    return report


@pytest.mark.slow
def test_cpu_smoke_text_end_to_end(text_bundle, tmp_path):
    report = smoke("text", text_bundle, tmp_path)
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {"finance_sentiment-lora", "finance_sentiment-full", "tiny_lm-lora"}
    assert checks["finance_sentiment-lora"]["cpu_reference"]["accuracy"] > 0.8  # the committed CPU row beside it
    assert "bleu" in checks["tiny_lm-lora"]["test"] and "eos_rate" in checks["tiny_lm-lora"]["test"]
    zoo = report["probe"]["zoo"]["minilm-l6"]
    assert zoo["carried"] and zoo["loads_as"] == "float32"


@pytest.mark.slow
def test_cpu_smoke_vision_end_to_end(vision_bundle, tmp_path):
    report = smoke("vision", vision_bundle, tmp_path)
    (check,) = report["checks"]
    assert check["check"] == "traffic_vehicles" and "map50" in check["test"] and check["cpu_reference"]["map50"] > 0
    assert report["probe"]["zoo"]["mobilenet-v2"]["carried"]


def test_probe_names_unmet_wheel_requirements(monkeypatch):
    import gpu_probe

    requires = {"datasets": ["pyarrow>=24.0.0", "dill<0.4.2,>=0.3.0", "torch; extra == 'torch'", "missing-pkg"]}
    versions = {"pyarrow": "21.0.0", "dill": "0.4.1"}
    monkeypatch.setattr(gpu_probe.md, "requires", lambda name: requires[name])
    monkeypatch.setattr(gpu_probe, "version", versions.get)
    assert gpu_probe.requirement_problems(["datasets-5.2.0-py3-none-any.whl"]) == [
        "datasets needs pyarrow>=24.0.0: found 21.0.0", "datasets needs missing-pkg: not installed"]
