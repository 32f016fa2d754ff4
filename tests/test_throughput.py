"""benchmarks/throughput_row.py on the toy task: counted FLOPs, profile shares and memory fields are real."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput_row import category, grouped_conv_backward_flop  # noqa: E402


def _row(task: Path, adapter: str, *overrides: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput_row.py"), str(task), adapter, "3", *overrides],
                         capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rows_count_flops_and_split_the_step(toy_task):
    import torch

    from mmsft.training.precision import resolve_precision

    # fp32 asked for explicitly; bf16 autocast wherever this CPU runs it clearly faster (AVX512-BF16 / AMX parts)
    full = _row(toy_task, "full", "train.mixed_precision=no")
    frozen = _row(toy_task, "frozen", "train.mixed_precision=auto")
    assert full["precision"] == "fp32"
    auto = resolve_precision("auto", torch.device("cpu"))  # "no" is how accelerate names fp32
    assert frozen["precision"] == ("fp32" if auto == "no" else auto)
    for row in (full, frozen):
        assert row["steps"] == 3 and row["samples_per_second"] > 0
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0
        assert 0 <= row["padding_share"] < 1
        assert abs(sum(row["profile"]["categories"].values()) - 1) < 0.05  # the categories cover the step
    # training memory counted in parts: AdamW keeps two fp32 moments per trainable number, the gradient one more
    for row in (full, frozen):
        memory = row["memory"]
        assert memory["optimizer_state_mb"] == pytest.approx(2 * memory["gradients_mb"], rel=0.02, abs=0.2)
        assert memory["batch_shape"][0] == row["batch_size"]
    assert full["memory"]["gradients_mb"] == pytest.approx(full["trainable_params"] * 4 / 2**20, rel=0.01)
    assert full["memory"]["gradients_mb"] > 10 * frozen["memory"]["gradients_mb"]
    # the frozen backbone's forward saves nothing for backward beyond the head's inputs
    assert sum(full["memory"]["saved_mb"].values()) > 5 * sum(frozen["memory"]["saved_mb"].values()) >= 0
    # a frozen backbone runs forward only: its backward is the head's, far fewer FLOPs per sample
    assert full["flops_per_sample"] > 2 * frozen["flops_per_sample"] > 0


def test_operator_categories():
    assert category("aten::addmm") == category("aten::mm") == category("aten::bmm") == "matmul"
    assert category("aten::_softmax") == "attention"
    assert category("Optimizer.step#AdamW.step") == "optimizer"
    assert category("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__") == "data"
    assert category("aten::gelu") == "elementwise / other"


def test_conv_backward_flops_respect_groups():
    """A depthwise conv's backward is two forward convs' worth (input and weight gradients), as a dense one's."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    for groups in (1, 16):
        conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups)
        x = torch.randn(2, 16, 8, 8, requires_grad=True)
        with FlopCounterMode(display=False) as forward:
            out = conv(x)
        with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop}) as backward:
            out.sum().backward()
        assert backward.get_total_flops() == 2 * forward.get_total_flops() > 0


def test_ab_probe_alternates_fresh_processes_and_reports_the_ratio(toy_task, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab_probe.py"), "masks", str(toy_task), "--adapters", "full",
                          "--a", "train.cpu_dropout=fast", "--b", "train.cpu_dropout=torch", "--repeats", "2", "--batches", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "ab_masks.json").read_text())
    (row,) = report["rows"]
    assert [len(row["runs"][s]) for s in ("a", "b")] == [2, 2]
    assert row["ratio_a_over_b"] == pytest.approx(row["a_samples_per_second"] / row["b_samples_per_second"], rel=1e-2)
    assert all(r["batches"] == 2 and r["samples_per_second"] > 0 for s in ("a", "b") for r in row["runs"][s])
    assert "train.cpu_dropout=torch" in (tmp_path / "ab_masks.md").read_text()


def test_ab_probe_items_with_upper_case_names_set_the_environment():
    from ab_probe import is_env

    assert is_env("ONEDNN_PRIMITIVE_CACHE_CAPACITY=16") and is_env("LRU_CACHE_CAPACITY=16")
    assert not is_env("train.cpu_dropout=fast") and not is_env("model.backbone=minilm-l6") and not is_env("OMP")


def test_ab_probe_runs_a_side_from_a_git_revision(toy_task, tmp_path):
    """``source=REV``: that side's processes import mmsft from a worktree of the revision; the report names the commit
    and the worktree is gone afterwards."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab_probe.py"), "src", str(toy_task), "--adapters", "full",
                          "--a", "source=HEAD", "--b", "train.cpu_dropout=fast", "--repeats", "1", "--batches", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "ab_src.json").read_text())
    assert report["commits"] == {"a": head.stdout.strip()}
    (row,) = report["rows"]
    side_a, side_b = row["runs"]["a"][0]["mmsft_from"], row["runs"]["b"][0]["mmsft_from"]
    assert side_b == str(ROOT.resolve()) and side_a != side_b and not Path(side_a).exists()
    assert head.stdout.strip()[:12] in (tmp_path / "ab_src.md").read_text()
