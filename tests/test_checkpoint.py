"""Atomic writes (mmsft.atomic) and pickle-free, verified checkpoints (mmsft.training.checkpoint)."""
from __future__ import annotations

import copy
import json
import os
import pickle
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmsft import atomic
from mmsft.training import checkpoint as ckpt
from mmsft.training.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from mmsft.training.schedules import build_scheduler


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- mmsft.atomic -----------------------------------------------------------------------------------
def test_atomic_write_keeps_old_content_when_the_writer_raises_midway(tmp_path):
    target = tmp_path / "data.json"
    atomic.write_json(target, {"version": 1})
    old = target.read_bytes()

    def half_then_fail(tmp):
        with open(tmp, "w") as fh:
            fh.write('{"version": 2, "trunc')  # half of the new content is on disk...
        raise RuntimeError("disk full")  # ...when the writer dies

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.atomic_write(target, half_then_fail)
    assert target.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_atomic_write_keeps_old_content_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "notes.txt"
    atomic.write_text(target, "old")

    def fail(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target, events = tmp_path / "x.bin", []
    real_file, real_dir = atomic.fsync_file, atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_file", lambda p: (events.append(("file", target.exists())), real_file(p)))
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (events.append(("dir", target.read_bytes())), real_dir(p)))
    atomic.write_bytes(target, b"payload")
    assert events == [("file", False), ("dir", b"payload")]


def test_killed_writer_leaves_the_target_intact_and_its_temp_is_cleaned(tmp_path):
    target = tmp_path / "w.txt"
    atomic.write_text(target, "complete")
    script = textwrap.dedent(f"""
        import os
        from mmsft import atomic
        def die(tmp):
            open(tmp, "w").write("half")
            os._exit(9)  # SIGKILL-like: no cleanup runs
        atomic.atomic_write({str(target)!r}, die)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert target.read_text() == "complete"
    assert len(atomic.temp_paths(tmp_path, "w.txt")) == 1
    atomic.remove_temps(tmp_path, "w.txt")
    assert _leftovers(tmp_path) == []


def test_atomic_files_get_the_mode_plain_open_would_give(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    made = atomic.write_text(tmp_path / "made", "x")
    assert (made.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    os.chmod(made, 0o640)
    atomic.write_text(made, "y")  # an existing file keeps its mode
    assert made.stat().st_mode & 0o777 == 0o640


def test_atomic_folder_leaves_no_half_folder_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("a")
            (tmp / "sub").mkdir()
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_atomic_folder_installs_and_refuses_to_clobber_unless_told(tmp_path):
    target = tmp_path / "out"
    with atomic.atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.")
        atomic.write_text(tmp / "a.txt", "first")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert (target / "a.txt").read_text() == "first" and (target / "sub" / "b.txt").read_text() == "b"

    with pytest.raises(FileExistsError):
        with atomic.atomic_folder(target) as tmp:
            pytest.fail("the block must not run when the target is not empty")
    assert (target / "a.txt").read_text() == "first"

    with pytest.raises(ValueError):  # a failed replacement leaves the old folder as it was
        with atomic.atomic_folder(target, replace=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "sub"] and (target / "a.txt").read_text() == "first"

    with atomic.atomic_folder(target, replace=True) as tmp:
        (tmp / "c.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert _leftovers(tmp_path) == []

    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic.atomic_folder(empty) as tmp:  # an empty folder is not clobbered: it is simply filled
        (tmp / "d.txt").write_text("d")
    assert (empty / "d.txt").read_text() == "d"


def test_atomic_folder_loses_a_race_cleanly(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(FileExistsError):
        with atomic.atomic_folder(target) as tmp:
            (tmp / "mine.txt").write_text("mine")
            target.mkdir()  # another process installed its folder meanwhile
            (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert _leftovers(tmp_path) == []


def test_save_safetensors_is_atomic_and_handles_shared_tensors(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    target = tmp_path / "w.safetensors"
    weight = torch.randn(3, 4)
    atomic.save_safetensors(target, {"a": weight, "tied": weight, "view": weight.t()}, metadata={"n": 1})
    back = load_file(str(target))
    assert torch.equal(back["a"], weight) and torch.equal(back["tied"], weight) and torch.equal(back["view"], weight.t())
    before = target.read_bytes()
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\x00" * 10)
        raise OSError("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError):
        atomic.save_safetensors(target, {"a": torch.zeros(1)})
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


def test_atomic_module_imports_only_the_standard_library():
    code = ("import sys; import mmsft.atomic; "
            "bad = [m for m in ('torch', 'numpy', 'safetensors', 'mmsft.paths', 'mmsft.training') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- checkpoints ------------------------------------------------------------------------------------
class Tiny(torch.nn.Module):
    """A model in the runner's shape: ``trainable_state_dict()``, a frozen part, dropout, ``{"loss": ...}``."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.drop = torch.nn.Dropout(0.3)
        self.frozen = torch.nn.Linear(16, 16).requires_grad_(False)
        self.heads = torch.nn.ModuleDict({"c": torch.nn.Linear(16, 3)})

    def trainable_state_dict(self):
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def forward(self, x, labels):
        h = self.frozen(self.drop(torch.relu(self.norm(self.body(x)))))
        return {"loss": torch.nn.functional.cross_entropy(self.heads["c"](h), labels)}


def _build(seed=0):
    from mmsft.training.optim import build_optimizer

    torch.manual_seed(seed)
    model = Tiny()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1, head_lr=3e-2)  # several param groups
    scheduler = build_scheduler(optimizer, "cosine", total_steps=20, warmup_ratio=0.2)
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps):
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 6) + float(np.random.rand()) + random.random()  # draws from all three RNGs
        loss = model(x, torch.randint(0, 3, (8,)))["loss"]
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _same(a, b, where="state"):
    """Bitwise equality of nested states, types included (a tuple stays a tuple, an int key an int)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b) and len(a) == len(b), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}/{i}")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _state(step):
    return TrainState(step=step, epoch=1, batch_in_epoch=2, samples_seen=24, train_seconds=1.5, best_metric=0.75,
                      best_step=2, history=[{"type": "eval", "step": 2, "accuracy": 0.75}])


def _draws():
    return random.random(), np.random.randn(), torch.rand(4)


def test_round_trip_restores_optimizer_scheduler_and_rng_bit_exactly(tmp_path):
    model, optimizer, scheduler = _build()
    _train(model, optimizer, scheduler, 3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # numpy keeps a cached gaussian: it must survive too
    path = save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, _state(3))
    expected = copy.deepcopy({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": ckpt.rng_state()})
    _train(model, optimizer, scheduler, 2)  # draws from all three RNGs and uses the optimizer and LR state
    after = {k: v.clone() for k, v in model.trainable_state_dict().items()}

    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "state.json", "trainable.safetensors",
                                                      "training.json", "training.safetensors"]
    assert latest_checkpoint(tmp_path / "ckpt") == path
    fresh, fresh_opt, fresh_sched = _build()  # the frozen part as before, untrained weights, empty optimizer state
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    state = load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert state == _state(3)
    _same(fresh_opt.state_dict(), expected["optimizer"], "optimizer")
    assert isinstance(fresh_opt.state_dict()["param_groups"][0]["betas"], tuple)
    adam = fresh_opt.state_dict()["state"][0]
    assert set(adam) == {"step", "exp_avg", "exp_avg_sq"} and adam["step"].dtype == torch.float32
    _same(fresh_sched.state_dict(), expected["scheduler"], "scheduler")
    _same(ckpt.rng_state(), expected["rng"], "rng")
    loaded_draws = _draws()
    ckpt.set_rng_state(expected["rng"])  # the in-memory original, never serialised
    original_draws = _draws()
    assert loaded_draws[:2] == original_draws[:2] and torch.equal(loaded_draws[2], original_draws[2])

    # training on from the restored state gives bitwise the weights training on from the original gave
    load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    _train(fresh, fresh_opt, fresh_sched, 2)
    for key, value in fresh.trainable_state_dict().items():
        assert torch.equal(value, after[key]), key


def test_extra_tensors_are_part_of_the_checkpoint(tmp_path):
    model, optimizer, scheduler = _build()
    best = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, _state(1), extra_tensors={"best.safetensors": best})
    assert "best.safetensors" in json.loads((path / "manifest.json").read_text())["files"]
    _same(ckpt.load_extra_tensors(path, "best.safetensors"), best)
    assert ckpt.load_extra_tensors(path, "callback-0-Ema.safetensors") is None
    _truncate(path / "best.safetensors")  # verified with the rest
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(ValueError, match="plain"):
        save_checkpoint(tmp_path, model, optimizer, scheduler, _state(2), extra_tensors={"../x.safetensors": best})
    assert not (tmp_path / "step-00000002").exists() and _leftovers(tmp_path) == []


def test_checkpoint_json_is_plain_json_and_tensors_are_safetensors(tmp_path):
    from safetensors.torch import load_file

    model, optimizer, scheduler = _build()
    _train(model, optimizer, scheduler, 1)
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, _state(1))
    training = json.loads((path / "training.json").read_text())
    # one entry per param group, None for a plain function: nothing of it is stored
    assert training["scheduler"]["lr_lambdas"] == [None] * len(optimizer.param_groups) and len(optimizer.param_groups) > 1
    assert training["optimizer"]["param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.999]}
    tensors = load_file(str(path / "training.safetensors"))
    assert {"optimizer/state/0/exp_avg", "optimizer/state/0/exp_avg_sq", "optimizer/state/0/step", "rng/torch"} <= set(tensors)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 1 and set(manifest["files"]) == {"trainable.safetensors", "training.safetensors",
                                                                "training.json", "state.json"}
    for name, entry in manifest["files"].items():
        assert entry["size"] == (path / name).stat().st_size and len(entry["sha256"]) == 64


def test_states_that_would_need_pickle_are_refused():
    class Schedule:
        def __call__(self, step):
            return 1.0

    with pytest.raises(TypeError, match="scheduler/lr_lambdas/0/fn"):
        ckpt.encode_state({"lr_lambdas": [{"fn": Schedule()}]}, "scheduler", {})
    tricky = {"__tuple__": 1, 3: (1, [2.5, float("inf")]), "a": np.arange(3, dtype=np.uint32), "s": np.float32(0.1)}
    tensors = {}
    back = ckpt.decode_state(json.loads(json.dumps(ckpt.encode_state(tricky, "x", tensors))), tensors)
    _same(back, tricky)


def _truncate(path):
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _three_checkpoints(folder):
    model, optimizer, scheduler = _build()
    paths = []
    for step in (2, 4, 6):
        _train(model, optimizer, scheduler, 2)
        paths.append(save_checkpoint(folder, model, optimizer, scheduler, _state(step), keep=3))
    return paths


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    old, previous, newest = _three_checkpoints(folder)
    assert latest_checkpoint(folder) == newest
    _truncate(newest / "trainable.safetensors")
    assert latest_checkpoint(folder) == previous
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step-00000006" in err[0] and "trainable.safetensors" in err[0]
    model, optimizer, scheduler = _build()
    assert load_checkpoint(previous, model, optimizer, scheduler).step == 4
    with pytest.raises(ckpt.CheckpointError, match="trainable.safetensors"):
        load_checkpoint(newest, model, optimizer, scheduler)

    # same size, one bit flipped: the sha256 catches it (and load_checkpoint does not trust a stale verification)
    data = bytearray((previous / "training.safetensors").read_bytes())
    data[-1] ^= 1
    (previous / "training.safetensors").write_bytes(bytes(data))
    assert latest_checkpoint(folder) == old
    assert "sha256" in capsys.readouterr().err
    with pytest.raises(ckpt.CheckpointError, match="sha256"):
        load_checkpoint(previous, model, optimizer, scheduler)

    (old / "manifest.json").unlink()  # no manifest: never complete
    assert latest_checkpoint(folder) is None
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


def test_torn_manifest_and_stale_temp_folders_are_skipped_and_cleaned(tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    old, previous, newest = _three_checkpoints(folder)
    (newest / "manifest.json").write_text('{"format": "mmsft-checkpoint", "vers')  # torn
    killed = folder / ".step-00000008.abc123.tmp"  # a save that was killed before its rename
    killed.mkdir()
    (killed / "trainable.safetensors").write_bytes(b"half")
    legacy_tmp = folder / ".tmp-step-00000009"  # the pickle-based format's temporary folder
    legacy_tmp.mkdir()
    assert latest_checkpoint(folder) == previous
    assert "manifest.json is unreadable" in capsys.readouterr().err
    # the next save cleans the leftovers; the newer torn checkpoint is from an abandoned timeline and goes too
    model, optimizer, scheduler = _build()
    load_checkpoint(previous, model, optimizer, scheduler)
    saved = save_checkpoint(folder, model, optimizer, scheduler, _state(5), keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000004", "step-00000005"]
    assert latest_checkpoint(folder) == saved
    save_checkpoint(folder, model, optimizer, scheduler, _state(7), keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000007"]


class Bomb:
    """Unpickling this creates ``marker``: what a crafted training.pt could do on ``torch.load``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_is_never_unpickled_on_resume(tmp_path, monkeypatch, capsys):
    folder, marker = tmp_path / "checkpoints", tmp_path / "PWNED"
    model, optimizer, scheduler = _build()
    _train(model, optimizer, scheduler, 2)
    good = save_checkpoint(folder, model, optimizer, scheduler, _state(2))
    # the bomb is live: the old loader (torch.load(weights_only=False)) would run it
    torch.save({"optimizer": Bomb(marker), "scheduler": {}, "rng": {}}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()

    # 1. next to a valid checkpoint's files, even listed in its manifest with the right hash
    bomb = (tmp_path / "probe.pt").read_bytes()
    (good / "training.pt").write_bytes(bomb)
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["files"]["training.pt"] = {"size": len(bomb), "sha256": ckpt._sha256(good / "training.pt")}
    (good / "manifest.json").write_text(json.dumps(manifest))
    # 2. a newer checkpoint in the old pickle format (no manifest), which an old resume would pick
    legacy = folder / "step-00000009"
    legacy.mkdir()
    (legacy / "training.pt").write_bytes(bomb)
    for name in ("trainable.safetensors", "state.json"):
        (legacy / name).write_bytes((good / name).read_bytes())

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was used on resume")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    found = latest_checkpoint(folder)
    assert found == good
    assert "training.pt is never read" in capsys.readouterr().err
    fresh, fresh_opt, fresh_sched = _build(seed=5)
    assert load_checkpoint(found, fresh, fresh_opt, fresh_sched).step == 2
    _same(fresh_opt.state_dict(), optimizer.state_dict())
    assert not marker.exists()


# -- end to end through the runner --------------------------------------------------------------------
def _runner(run_dir, callbacks=(), **settings):
    from mmsft.spec import TrainSpec
    from mmsft.training.runner import Runner

    run_dir.mkdir(parents=True, exist_ok=True)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model = Tiny()
    gen = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(40, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    dataset = [{"x": xs[i], "labels": ys[i]} for i in range(40)]

    def collate(rows):  # noise from numpy and python RNG: their states must come back exactly too
        x = torch.stack([r["x"] for r in rows]) + float(np.random.normal()) * 0.01 + random.random() * 0.01
        return {"x": x, "labels": torch.stack([r["labels"] for r in rows])}

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            loss = m(xs[:16], ys[:16])["loss"].item()
        return {"accuracy": -loss}

    spec = TrainSpec(epochs=2, batch_size=4, lr=1e-2, save_every_steps=2, keep_checkpoints=2, device="cpu",
                     log_every_steps=1, eval_every_steps=3, warmup_ratio=0.1, **settings)
    return Runner(spec, model, dataset, collate, [1] * 40, evaluate, run_dir, callbacks=callbacks)


def test_runner_draws_cpu_dropout_masks_its_own_way_unless_told_torch(tmp_path):
    """On a CPU the runner gives the model's dropouts mmsft's cheaper mask (the resume test below then covers its
    exactness); ``train.cpu_dropout: torch`` keeps nn.Dropout's."""
    from mmsft.models.dropout import CpuDropout

    assert type(_runner(tmp_path / "fast").model.drop) is CpuDropout
    assert type(_runner(tmp_path / "torch", cpu_dropout="torch").model.drop) is torch.nn.Dropout


def test_runner_resumes_bit_exactly_past_a_torn_checkpoint_and_a_planted_pickle(tmp_path, capsys):
    straight = _runner(tmp_path / "straight")
    straight.fit()
    expected = straight.accelerator.unwrap_model(straight.model).trainable_state_dict()

    class Crash(Exception):
        pass

    class CrashAt15:  # the runner's callback protocol (hooks) and the older plain callable(state)
        def __getattr__(self, name):
            if name.startswith(("on_", "before_")):
                return lambda *args: None
            raise AttributeError(name)

        def on_step_end(self, runner, state):
            self(state)

        def __call__(self, state):
            if state.step == 15:
                raise Crash()

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    crashed = _runner(tmp_path / "resumed", callbacks=[CrashAt15()])
    with pytest.raises(Crash):
        crashed.fit()
    folder = tmp_path / "resumed" / "checkpoints"
    assert sorted(p.name for p in folder.glob("step-*")) == ["step-00000012", "step-00000014"]
    _truncate(folder / "step-00000014" / "training.safetensors")  # the newest one is torn
    marker = tmp_path / "PWNED"
    torch.save({"optimizer": Bomb(marker)}, folder / "step-00000012" / "training.pt")
    resumed = _runner(tmp_path / "resumed")
    result = resumed.fit(resume=True)
    assert "skipping checkpoint" in capsys.readouterr().err
    assert result.state.step == 20 and not marker.exists()
    got = resumed.accelerator.unwrap_model(resumed.model).trainable_state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


# -- the other writers that go through mmsft.atomic ------------------------------------------------------
def test_cached_splits_and_tokenized_never_leave_half_entries(tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict

    from mmsft.data import cache

    monkeypatch.setenv("MMSFT_CACHE", str(tmp_path))
    real_save = DatasetDict.save_to_disk

    def save_half(self, path, **kwargs):
        real_save(self, path, **kwargs)
        raise KeyboardInterrupt  # killed after writing, before the rename

    monkeypatch.setattr(DatasetDict, "save_to_disk", save_half)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_splits("k", lambda: {"train": [{"x": 1}]})
    assert list((tmp_path / "datasets").iterdir()) == []
    monkeypatch.setattr(DatasetDict, "save_to_disk", real_save)
    assert cache.cached_splits("k", lambda: {"train": [{"x": 1}]})["train"][0] == {"x": 1}
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == ["k"]

    ds = Dataset.from_list([{"text": "a"}, {"text": "bb"}])

    def boom(batch):
        raise RuntimeError("tokenizer died")

    with pytest.raises(RuntimeError):
        cache.tokenized(ds, boom, "t", "train")
    assert list((tmp_path / "tokenized").iterdir()) == []
    out = cache.tokenized(ds, lambda b: {"n": [len(t) for t in b["text"]]}, "t", "train")
    assert out["n"] == [1, 2] and [p.name for p in (tmp_path / "tokenized").iterdir()] == ["t-train.arrow"]


def test_vision_zoo_conversion_goes_through_the_atomic_helpers(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from mmsft.zoo import vision

    monkeypatch.setenv("MMSFT_CACHE", str(tmp_path))
    assert not hasattr(vision, "_atomic_write")

    def dies():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vision._convert_once("fake-net", dies, {"source": "pkg/file.pth"})
    folder = vision._convert_once("fake-net", lambda: {"w": torch.ones(2, 2)}, {"source": "pkg/file.pth", "mean": (0.5,)})
    assert json.loads((folder / "meta.json").read_text()) == {"source": "pkg/file.pth", "mean": [0.5]}
    assert torch.equal(load_file(str(folder / "model.safetensors"))["w"], torch.ones(2, 2))
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.safetensors"]
