"""train.mixed_precision: auto picks bf16 on a CPU only where bf16 is measured faster."""
from __future__ import annotations

import torch

from mmsft.training import precision
from mmsft.spec import build_run_config


def test_auto_follows_the_measured_speedup(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 2.6)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.02)  # emulated bf16 (no AVX512-BF16 / AMX)
    assert precision.resolve_precision("auto", cpu) == "no"
    assert precision.resolve_precision("bf16", cpu) == "bf16"  # asked for: honoured, however slow


def test_probe_measures_both_dtypes(monkeypatch):
    fp32 = precision.matmul_gflops(torch.float32, shape=(64, 64, 64))
    bf16 = precision.matmul_gflops(torch.bfloat16, shape=(64, 64, 64))
    assert fp32 > 0 and bf16 > 0
    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: False)
    precision.cpu_bf16_speedup.cache_clear()
    assert precision.cpu_bf16_speedup() > 0
    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: True)  # emulated bf16: no timing, never picked
    precision.cpu_bf16_speedup.cache_clear()
    assert precision.cpu_bf16_speedup() == 0.0
    precision.cpu_bf16_speedup.cache_clear()


def test_yaml_no_is_the_string_no(toy_task):
    """A bare `no` on the command line is YAML's false; a string-valued choice takes it as "no"."""
    cfg = build_run_config(toy_task, "full", ["train.mixed_precision=no"])
    assert cfg.train.mixed_precision == "no"
