"""The runner: exact resume, feature caching, early stopping, batching, optimizer groups, schedules."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmsft.errors import UserError
from mmsft.pipeline import train
from mmsft.spec import build_run_config
from mmsft.training.callbacks import Callback
from mmsft.training.sampling import epoch_batches


class Crash(Exception):
    pass


def _weights(run_dir):
    out = load_file(str(run_dir / "model" / "heads.safetensors"))
    backbone = run_dir / "model" / "adapters" / "full" / "model.safetensors"
    if backbone.exists():
        out.update({f"backbone.{k}": v for k, v in load_file(str(backbone)).items()})
    return out


def test_resume_after_interruption_gives_identical_weights(toy_task, isolated):
    overrides = ["train.save_every_steps=3", "train.epochs=2"]
    straight = train(build_run_config(str(toy_task), "full", overrides), isolated / "straight")

    class CrashAt5(Callback):
        def on_step_end(self, runner, state):
            if state.step == 5:
                raise Crash()

    resumed_dir = isolated / "resumed"
    with pytest.raises(Crash):
        train(build_run_config(str(toy_task), "full", overrides), resumed_dir, callbacks=[CrashAt5()])
    assert (resumed_dir / "checkpoints" / "step-00000003").is_dir()  # the last save before the crash
    assert not (resumed_dir / "metrics.json").exists()
    train(build_run_config(str(toy_task), "full", overrides), resumed_dir, resume=True)

    a, b = _weights(straight), _weights(resumed_dir)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((straight / "metrics.json").read_text())["steps"] == json.loads((resumed_dir / "metrics.json").read_text())["steps"]


def test_frozen_feature_cache_matches_uncached_training(toy_task, isolated):
    cached = train(build_run_config(str(toy_task), "frozen", ["train.epochs=3"]), isolated / "cached")
    plain = train(build_run_config(str(toy_task), "frozen", ["train.epochs=3", "train.cache_features=false"]), isolated / "plain")
    m_cached, m_plain = (json.loads((d / "metrics.json").read_text()) for d in (cached, plain))
    assert m_cached["features_cached"] and not m_plain["features_cached"]
    a, b = _weights(cached), _weights(plain)
    for key in a:  # features encoded in eval batches vs in training batches: matmuls blocked differently, ~1e-5 apart
        assert torch.allclose(a[key], b[key], atol=1e-4), key
    assert m_cached["test"]["accuracy"] == m_plain["test"]["accuracy"]


def test_training_learns_and_writes_a_complete_run(toy_task, isolated):
    run = train(build_run_config(str(toy_task), "full", ["train.epochs=10", "train.lr=5e-3"]), isolated / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the toy label is carried by one word
    for name in ["config.yaml", "params.json", "metrics.jsonl", "report.md", "curves.png", "confusion_matrix.png",
                 "model/heads.safetensors", "model/README.md", "model/adapters/full/model.safetensors", "model/tokenizer.json"]:
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()
    assert metrics["cpu_allocator_tuned"] == (platform.libc_ver()[0] == "glibc")  # train.cpu_allocator=keep on CPU
    assert json.loads((run / "params.json").read_text())["trainable_params"] == metrics["trainable_params"]


def test_early_stopping_stops_after_patience(toy_task, isolated):
    # a vanishing lr: the validation metric never improves after the first evaluation
    run = train(build_run_config(str(toy_task), "full", ["train.epochs=10", "train.lr=1e-12", "train.head_lr=1e-12",
                                                          "train.early_stopping.patience=2"]), isolated / "es")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs_completed"] == 3


def test_length_grouped_batches_are_deterministic_and_complete():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    a = epoch_batches(lengths, 16, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 16, seed=1, epoch=0)
    assert a != epoch_batches(lengths, 16, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch_batches(lengths, 16, 1, 0, False)) / len(a)
    assert spread < random_spread / 3


def test_weight_decay_skips_biases_and_norms_and_head_lr():
    from mmsft.training.optim import build_optimizer

    model = torch.nn.Module()
    model.lin = torch.nn.Linear(4, 4)
    model.norm = torch.nn.LayerNorm(4)
    model.heads = torch.nn.ModuleDict({"c": torch.nn.Linear(4, 2)})
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, head_lr=1e-2)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_id[id(model.lin.weight)]["weight_decay"] == 0.1 and by_id[id(model.lin.weight)]["lr"] == 1e-3
    assert by_id[id(model.lin.bias)]["weight_decay"] == 0.0
    assert by_id[id(model.norm.weight)]["weight_decay"] == 0.0
    assert by_id[id(model.heads.c.weight)]["lr"] == 1e-2


def test_layer_decay_scales_lr_by_block_depth(tiny_bert):
    from transformers import AutoModel

    from mmsft.training.optim import build_optimizer

    model = torch.nn.Module()
    model.backbone = AutoModel.from_pretrained(tiny_bert)  # 2 blocks: encoder.layer.0 / .1
    model.heads = torch.nn.ModuleDict({"c": torch.nn.Linear(4, 2)})
    opt = build_optimizer(model, lr=1.0, weight_decay=0.0, head_lr=5.0, layer_decay=0.5)
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    bb = model.backbone
    assert lr[id(bb.encoder.layer[1].attention.self.query.weight)] == 0.5  # top block: decay**1
    assert lr[id(bb.encoder.layer[0].output.dense.weight)] == 0.25  # next one down: decay**2
    assert lr[id(bb.embeddings.word_embeddings.weight)] == 0.125  # below every block
    assert lr[id(bb.pooler.dense.weight)] == 1.0 and lr[id(model.heads.c.weight)] == 5.0
    plain = build_optimizer(model, lr=1.0, weight_decay=0.0)
    assert {g["lr"] for g in plain.param_groups} == {1.0}


def test_layer_decay_is_validated():
    from mmsft.spec import build_run_config

    with pytest.raises(UserError, match="layer_decay"):
        build_run_config("finance_sentiment", "full", ["train.layer_decay=1.5"])


@pytest.mark.parametrize("name, mid, end", [("linear", 0.5, 0.0), ("cosine", 0.5, 0.0), ("constant", 1.0, 1.0)])
def test_schedules_warm_up_then_decay(name, mid, end):
    from mmsft.training.schedules import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, name, total_steps=110, warmup_ratio=10 / 110)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert lrs[60] == pytest.approx(mid, abs=0.02)
    assert opt.param_groups[0]["lr"] == pytest.approx(end, abs=0.02)


def test_losses():
    from mmsft.spec import LossSpec
    from mmsft.training.losses import balanced_weights, build_loss

    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), torch.tensor([0, 1, 1])
    ce = build_loss(LossSpec())(logits, labels)
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    assert build_loss(LossSpec(label_smoothing=0.2))(logits, labels) != pytest.approx(ce.item())
    focal = build_loss(LossSpec(name="focal", focal_gamma=0.0))(logits, labels)
    assert focal == pytest.approx(ce.item(), rel=1e-5)  # gamma 0 is cross-entropy
    assert build_loss(LossSpec(name="focal", focal_gamma=2.0))(logits, labels) < ce
    assert balanced_weights([30, 10]).tolist() == pytest.approx([40 / 60, 40 / 20])


ALLOCATE_AND_COUNT_FAULTS = """
import resource, sys, torch
from mmsft.training.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # what a training step does with its activations: 64 MB blocks, served by mmap under glibc's defaults
    x = torch.ones(16 << 20); small = torch.randn(1000); y = x * 2; del x; z = y + 1; del y, z
for _ in range(5):  # the kept heap settles after a step or two
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _allocator_child(script: str, mode: str) -> int:
    """The number ``script`` prints last, run in a fresh process under ``train.cpu_allocator`` = ``mode``."""
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_cpu_allocator_keep_reuses_freed_blocks_instead_of_refaulting_them():
    system, keep = (_allocator_child(ALLOCATE_AND_COUNT_FAULTS, mode) for mode in ("system", "keep"))
    assert system > 5 * 3 * (64 << 20) // 4096 // 2  # every 64 MB block faulted in again, page by page
    assert keep < system / 5  # (usually ~0; a heap that regrows once under load refaults one 128 MB pair)


RSS_AFTER_FREE = """
import sys, torch
from mmsft.training.cpu_memory import configure_allocator
assert configure_allocator(sys.argv[1]) == (sys.argv[1] != "system")
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
base = rss_mb()
for _ in range(3):  # 200 blocks of 1 MB, then 2 MB: the heap's high-water mark grows, the live set ends empty
    blocks = [torch.ones(1 << 18) for _ in range(200)]
    bigger = [torch.ones(1 << 19) for _ in range(200)]
    del blocks, bigger
print(rss_mb() - base)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_cpu_allocator_release_hands_freed_memory_back():
    keep, release = (_allocator_child(RSS_AFTER_FREE, mode) for mode in ("keep", "release"))
    assert keep > 400  # the kept heap holds what the blocks took
    assert release < 40  # released: resident memory follows the (empty) live set


KERNEL_CACHE_GROWTH = """
import os, sys, torch
from mmsft.training.cpu_memory import cap_kernel_caches, configure_allocator
cap_kernel_caches(sys.argv[1])
configure_allocator("release")  # resident memory follows live blocks: what stays is the kernel caches
torch.set_num_threads(1)
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
w = torch.randn(1536, 384, dtype=torch.bfloat16, requires_grad=True)
torch.nn.functional.linear(torch.randn(8, 384, dtype=torch.bfloat16), w)
base = rss_mb()
for rows in range(320, 6720, 32):  # 200 sequence lengths of a 32-row batch, forward and backward
    torch.nn.functional.linear(torch.randn(rows, 384, dtype=torch.bfloat16), w).sum().backward()
    w.grad = None
print(os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "-"), rss_mb() - base)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kernel_caches_are_capped_so_new_shapes_do_not_pile_up():
    """bf16 kernels over 200 shapes: with glibc's defaults for the caches (``system``) they keep hundreds of MB;
    capped (``keep`` / ``release``) the growth is a fraction; a value the user exported is kept."""
    from mmsft.training.cpu_memory import KERNEL_CACHE_VARIABLES

    clean = {k: v for k, v in os.environ.items() if k not in KERNEL_CACHE_VARIABLES}  # an earlier Runner in this process set them

    def child(mode: str, env: dict) -> list[str]:
        return subprocess.run([sys.executable, "-c", KERNEL_CACHE_GROWTH, mode], capture_output=True, text=True, check=True,
                              env=env).stdout.split()

    system, capped = (int(child(mode, clean)[-1]) for mode in ("system", "keep"))
    assert capped < system / 2 and system > 120
    assert child("keep", {**clean, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "7"})[-2] == "7"
    assert child("keep", clean)[-2] == child("release", clean)[-2] == "16"


PEAK_AFTER_RESET = """
import torch
from mmsft.training.memory import current_memory_mb, peak_memory_mb, reset_peak_memory
cpu = torch.device("cpu")
big = torch.ones(48 << 20)  # 192 MB, touched: mapped from the OS and unmapped on free (glibc's default)
high = peak_memory_mb(cpu)
del big
assert reset_peak_memory(cpu)
after_reset = peak_memory_mb(cpu)
small = torch.ones(16 << 20)  # 64 MB
print(high, after_reset, current_memory_mb(cpu), peak_memory_mb(cpu))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="VmHWM resets through /proc")
def test_peak_memory_counts_from_the_reset_so_a_run_reports_its_own_peak():
    """The runner resets the peak when fit starts: an earlier, bigger allocation in the process is not this run's."""
    out = subprocess.run([sys.executable, "-c", PEAK_AFTER_RESET], capture_output=True, text=True, check=True)
    high, after_reset, now, peak = map(float, out.stdout.split())
    assert after_reset < high - 150  # the freed 192 MB no longer counts
    assert peak >= now >= after_reset + 60  # the 64 MB allocated since does


def test_a_run_records_its_training_memory(toy_task, isolated):
    run = train(build_run_config(str(toy_task), "full", ["train.epochs=1"]), isolated / "mem")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["training_memory_mb"] < metrics["peak_memory_mb"]
    assert "training_memory_mb" in (run / "report.md").read_text()


def test_kernel_caches_are_capped_before_the_precision_probe_makes_its_kernels(monkeypatch):
    """``mmsft train`` makes its accelerator before the Runner: the cap must already be set when ``auto`` times
    bf16 matmuls (a cap set later is never read: whole runs kept 1,024 kernels per cache)."""
    import mmsft.training.runner as runner_module
    from mmsft.spec import TrainSpec
    from mmsft.training.cpu_memory import KERNEL_CACHE_VARIABLES

    for name in KERNEL_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen = {}

    class Probed(Exception):
        pass

    def probe(mode, device):  # records, then stops: accelerate's process-wide state may already hold another precision
        seen.update({name: os.environ.get(name) for name in KERNEL_CACHE_VARIABLES})
        raise Probed

    monkeypatch.setattr(runner_module, "resolve_precision", probe)
    with pytest.raises(Probed):
        runner_module.make_accelerator(TrainSpec(device="cpu"))
    assert seen == {name: "16" for name in KERNEL_CACHE_VARIABLES}
