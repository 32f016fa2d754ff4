"""Faults: SIGKILL at chosen points and exact resume, NaN / inf and fp16 overflow in the runner, a full disk,
an unwritable or busy run folder, and no code from files (pickles in a run folder, ``auto_map`` backbones).

The long kill trials are ``benchmarks/faults.py``; here three of them run on a tiny BERT (one per class:
a training step, a checkpoint write, the final save) with the benchmark's own machinery.
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import pickle
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PROJECT, TOY_TRAIN, write_toy_task
from mmsft import atomic
from mmsft.cli.main import main
from mmsft.errors import UserError


def _task(tmp_path: Path, tiny_bert: Path, extra: str = "") -> Path:
    """The toy CSV task on the tiny BERT, one thread, a checkpoint every 3 steps."""
    return write_toy_task(tmp_path, tiny_bert, rows=60, adapter="full",
                          train=f"{TOY_TRAIN}, save_every_steps: 3, eval_every_steps: 4, threads: 1{extra}")


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("mmsft: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# -- kill anywhere, resume exactly (the benchmark's machinery, three trials) ---------------------------------
def _benchmark():
    spec = importlib.util.spec_from_file_location("faults_benchmark", PROJECT / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_at_a_step_a_checkpoint_write_and_the_final_save_then_resume_is_bitwise_identical(tmp_path, tiny_bert):
    bench = _benchmark()
    task = _task(tmp_path, tiny_bert)
    trials = bench.run_kind("text_classification", task, tmp_path / "work", 3, random.Random(3), log=lambda *_: None,
                            points=["step", "checkpoint", "final_save"], separate_reference=False)
    for trial in trials:
        assert trial["died_by_sigkill_there"], trial  # the kill landed at the point it names
        assert trial["resume_exit_code"] == 0, trial
        assert trial["identical_weights"] and trial["identical_metrics"], trial
        assert trial["leftovers"] == [], trial  # no temporary file, lock or checkpoint after the resume
        if trial["state_after_kill"] == "unfinished":
            assert trial["eval_refused_unfinished"], trial
        else:
            assert trial["finished_model_identical"], trial
    assert [t["kill_point"] for t in trials] == ["step", "checkpoint", "final_save"]


def test_fault_points_trace_and_kill_where_asked(tmp_path):
    """``mmsft.faults`` itself: a trace lists the points; a kill happens at the n-th matching one, logged first."""
    def script(folder):
        return textwrap.dedent(f"""
            from mmsft import atomic
            for i in range(3):
                atomic.write_text({str(folder)!r} + f"/f{{i}}.txt", "x")
            print("survived")
        """)

    env = {**os.environ, "MMSFT_FAULT_TRACE": str(tmp_path / "trace.jsonl")}
    out = subprocess.run([sys.executable, "-c", script(tmp_path / "traced")], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "survived" in out.stdout
    events = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [e["point"] for e in events] == ["write"] * 3 and events[1]["path"].endswith("f1.txt")

    killed = tmp_path / "killed"
    env = {**os.environ, "MMSFT_FAULT": "write:1:*/f1.txt", "MMSFT_FAULT_LOG": str(tmp_path / "kill.jsonl")}
    out = subprocess.run([sys.executable, "-c", script(killed)], env=env, capture_output=True, text=True)
    assert out.returncode == -9 and "survived" not in out.stdout
    assert json.loads((tmp_path / "kill.jsonl").read_text())["path"].endswith("f1.txt")
    assert (killed / "f0.txt").exists() and not (killed / "f1.txt").exists()  # killed before its rename
    assert len(atomic.temp_paths(killed, "f1.txt")) == 1  # what a kill leaves; the next writer there cleans it


def test_resume_trims_the_log_and_a_finished_run_is_left_as_it_is(tmp_path, tiny_bert, isolated, capsys):
    from mmsft.training.callbacks import Callback
    from mmsft.pipeline import train
    from mmsft.spec import build_run_config

    task = _task(tmp_path, tiny_bert)

    class CrashAt5(Callback):
        def on_step_end(self, runner, state):
            if state.step == 5:
                with runner.log_path.open("a") as fh:
                    fh.write('{"type": "train", "step": 5, "lo')  # a line cut short by the crash
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build_run_config(str(task)), run, callbacks=[CrashAt5()])
    assert not (run / atomic.LOCK_NAME).exists()  # released on the way out
    train(build_run_config(str(task)), run, resume=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # no torn line
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)
    train_steps = [r["step"] for r in records if r["type"] == "train"]
    assert len(train_steps) == len(set(train_steps))  # steps 4-5 trained twice, logged once

    before = (run / "metrics.json").read_bytes()
    (run / "checkpoints").mkdir()  # what a kill after metrics.json (during the clean-up) leaves
    (run / ".model.abc123.old").mkdir()
    code, err = _run(["train", task, "--resume", run], capsys)
    assert code == 0 and "finished training already" in err
    assert (run / "metrics.json").read_bytes() == before
    assert not (run / "checkpoints").exists() and _leftovers(run) == []


# -- numerical faults ----------------------------------------------------------------------------------------
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 8)
        self.heads = torch.nn.ModuleDict({"c": torch.nn.Linear(8, 2)})

    def trainable_state_dict(self):
        return {k: v for k, v in self.state_dict().items()}

    def forward(self, x, labels, poison):
        logits = self.heads["c"](torch.relu(self.body(x)))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        if poison.item() == 1:  # a NaN loss
            loss = loss * float("nan")
        elif poison.item() == 2:  # a finite loss whose gradients are inf
            loss = _InfGrad.apply(loss)
        elif poison.item() == 3:  # a finite loss whose gradients overflow under a grad scaler (x 2**16)
            loss = loss * 1e36
        return {"loss": loss}


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _runner(run_dir: Path, poison: dict, accelerator=None, callbacks=(), first_batch: int = 0, **spec):
    """A Runner over 32 rows in batches of 4 (8 steps an epoch); ``poison``: batch index -> 1 NaN loss, 2 inf grads,
    3 a huge loss (``first_batch``: the index of the first batch it collates, for a resumed runner)."""
    from mmsft.spec import TrainSpec
    from mmsft.training.runner import Runner

    run_dir.mkdir(parents=True, exist_ok=True)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model = Tiny()
    gen = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(32, 4, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    dataset = list(range(32))
    seen = {"batches": first_batch}

    def collate(idx):
        batch = seen["batches"]
        seen["batches"] += 1
        return {"x": xs[idx], "labels": ys[idx], "poison": torch.tensor(poison.get(batch, 0))}

    settings = dict(epochs=2, batch_size=4, lr=1e-2, device="cpu", log_every_steps=1, save_every_steps=2, warmup_ratio=0.0,
                    group_by_length=False)
    settings.update(spec)
    return Runner(TrainSpec(**settings), model, dataset, collate, [1] * 32, lambda m: {"accuracy": 0.0}, run_dir,
                  accelerator=accelerator, callbacks=callbacks)


def _weights(runner):
    return {k: v.clone() for k, v in runner.accelerator.unwrap_model(runner.model).trainable_state_dict().items()}


@pytest.mark.parametrize("poison, reason", [(1, "loss is nan"), (2, "gradient norm is")])
@pytest.mark.parametrize("max_grad_norm", [1.0, None])
def test_nonfinite_loss_or_gradient_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, poison, reason, max_grad_norm):
    from mmsft.training.checkpoint import latest_checkpoint
    from mmsft.training.runner import NonFiniteError

    runner = _runner(tmp_path, {4: poison}, max_grad_norm=max_grad_norm)  # batch 4 is step 5
    with pytest.raises(NonFiniteError) as info:
        runner.fit()
    text = str(info.value)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2 and "\n" not in text
    assert re.search(re.escape(reason) + r"( nan| inf)? at step 5 \(epoch 0, batch 5 of 8\)", text) and "step-00000004" in text, text
    kept = latest_checkpoint(tmp_path / "checkpoints")
    assert kept.name == "step-00000004" and sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000004"]
    assert all(torch.isfinite(v).all() for v in _weights(runner).values())  # nothing poisoned reached the weights


def test_nonfinite_skip_drops_those_steps_and_finishes(tmp_path):
    from mmsft.training.callbacks import Callback

    snapshots = {}

    class Snapshot(Callback):
        def on_step_end(self, runner, state):
            snapshots[state.step] = _weights(runner)

    runner = _runner(tmp_path, {2: 1, 9: 2}, nonfinite="skip", callbacks=[Snapshot()])
    result = runner.fit()
    assert result.state.step == 16 and result.state.skipped_steps == 2
    for step in (3, 10):  # batch 2 -> step 3, batch 9 -> step 10: no update
        assert all(torch.equal(snapshots[step][k], snapshots[step - 1][k]) for k in snapshots[step])
    assert not all(torch.equal(snapshots[4][k], snapshots[3][k]) for k in snapshots[4])
    skips = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"skip"' in line]
    assert [(s["step"], s["reason"].split(" is ")[0]) for s in skips] == [(3, "loss"), (10, "gradient norm")]
    assert all(torch.isfinite(v).all() for v in _weights(runner).values())


def _scaled_accelerator():
    """accelerate's fp16 path on a CPU: accelerate only builds a GradScaler on GPUs, so give it torch's CPU one."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    return acc


def test_fp16_overflow_is_the_grad_scalers_and_its_state_resumes_exactly(tmp_path):
    from mmsft.training.callbacks import Callback

    snapshots = {}

    class Snapshot(Callback):
        def on_step_end(self, runner, state):
            snapshots[state.step] = _weights(runner)

    straight = _runner(tmp_path / "a", {5: 3}, accelerator=_scaled_accelerator(), callbacks=[Snapshot()], max_grad_norm=None)
    result = straight.fit()  # no NonFiniteError: the scaler skipped the step and halved its scale
    assert result.state.overflow_steps == 1 and result.state.skipped_steps == 0
    assert straight.accelerator.scaler.get_scale() == 2.0**15
    assert all(torch.equal(snapshots[6][k], snapshots[5][k]) for k in snapshots[6])
    expected = _weights(straight)

    class Crash(Callback):
        def on_step_end(self, runner, state):
            if state.step == 11:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path / "b", {5: 3}, accelerator=_scaled_accelerator(), callbacks=[Crash()], max_grad_norm=None).fit()
    resumed = _runner(tmp_path / "b", {5: 3}, accelerator=_scaled_accelerator(), max_grad_norm=None, first_batch=10)
    result = resumed.fit(resume=True)  # from step 10: the scale (2**15) comes back from the checkpoint
    assert resumed.accelerator.scaler.get_scale() == 2.0**15 and result.state.overflow_steps == 1
    got = _weights(resumed)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


# -- resource faults -----------------------------------------------------------------------------------------
def test_disk_full_during_a_checkpoint_write_exits_2_and_keeps_the_last_complete_checkpoint(tmp_path, tiny_bert, isolated,
                                                                                            monkeypatch, capsys):
    task = _task(tmp_path, tiny_bert)
    run = tmp_path / "run"
    real = atomic.save_safetensors

    def full_at_step_6(path, tensors, metadata=None):
        if ".step-00000006." in str(path) and Path(path).name == "training.safetensors":
            def write(tmp):
                with open(tmp, "wb") as fh:
                    fh.write(b"\0" * 1000)  # half written when the disk fills up
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return atomic.atomic_write(path, write)
        return real(path, tensors, metadata)

    monkeypatch.setattr(atomic, "save_safetensors", full_at_step_6)
    code, err = _run(["train", task, "--output", run], capsys)
    line = _one_line_error(err)
    assert code == 2 and "No space left on device" in line and "--resume" in line, line
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-00000005"], kept  # the epoch-end checkpoint before; no half step-6
    assert not (run / "metrics.json").exists() and _leftovers(run) == []
    monkeypatch.setattr(atomic, "save_safetensors", real)
    code, _ = _run(["train", task, "--resume", run], capsys)
    assert code == 0 and (run / "metrics.json").is_file()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MiB tmpfs (root and mount(8) needed; skipped elsewhere), unmounted afterwards."""
    def mount(options: str) -> Path:
        point = tmp_path / f"mnt-{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                                capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(point)
        return point

    mounted: list[Path] = []
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_a_really_full_disk_exits_2_with_nothing_half_written(tmp_path, tiny_bert, isolated, small_tmpfs, capsys):
    disk = small_tmpfs("size=3m")
    code, err = _run(["train", _task(tmp_path, tiny_bert), "--output", disk / "run"], capsys)
    line = _one_line_error(err)
    assert code == 2 and "No space left on device" in line, line
    assert _leftovers(disk) == [] and not (disk / "run" / "metrics.json").exists()
    checkpoints = disk / "run" / "checkpoints"
    assert not checkpoints.exists() or all(p.name.startswith("step-") for p in checkpoints.iterdir())


def test_unwritable_output_folders_exit_2_and_create_nothing(tmp_path, tiny_bert, isolated, small_tmpfs, monkeypatch, capsys):
    task = _task(tmp_path, tiny_bert)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _run(["train", task, "--output", blocker / "run"], capsys)
    assert code == 2 and "is a file, not a folder" in _one_line_error(err)

    read_only = small_tmpfs("ro,size=1m")
    code, err = _run(["train", task, "--output", read_only / "run"], capsys)
    assert code == 2 and "cannot write into" in _one_line_error(err)
    # past the early check (a folder that turns read-only meanwhile): the write's own EROFS, one line
    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    code, err = _run(["train", task, "--output", read_only / "run"], capsys)
    assert code == 2 and "Read-only file system" in _one_line_error(err)
    assert list(read_only.iterdir()) == []


def test_a_second_run_into_a_busy_or_taken_output_exits_2(tmp_path, tiny_bert, isolated, capsys):
    task = _task(tmp_path, tiny_bert)
    run = tmp_path / "run"
    run.mkdir()
    with atomic.FolderLock(run):  # another mmsft process is writing this (new, still empty) folder
        code, err = _run(["train", task, "--output", run], capsys)
        assert code == 2 and f"in use by another mmsft process (pid {os.getpid()})" in _one_line_error(err)
        assert sorted(p.name for p in run.iterdir()) == [atomic.LOCK_NAME]


def test_two_runs_started_into_one_new_output_at_once_one_wins(tmp_path, tiny_bert):
    task = _task(tmp_path, tiny_bert)
    run = tmp_path / "run"
    env = {**os.environ, "MMSFT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mmsft", "train", str(task), "--output", str(run)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another mmsft process" in loser or "exists and is not empty" in loser, loser
    assert json.loads((run / "metrics.json").read_text())["steps"] > 0 and _leftovers(run) == []


def test_two_resumes_of_one_run_the_second_exits_2(tmp_path, tiny_bert, isolated, capsys):
    from mmsft.pipeline import train
    from mmsft.spec import build_run_config
    from mmsft.training.callbacks import Callback

    task = _task(tmp_path, tiny_bert)

    class Crash(Callback):
        def on_step_end(self, runner, state):
            if state.step == 4:
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build_run_config(str(task)), run, callbacks=[Crash()])
    listing = sorted(p.name for p in run.rglob("*"))
    with atomic.FolderLock(run):  # the first resume is running
        code, err = _run(["train", task, "--resume", run], capsys)
        assert code == 2 and "in use by another mmsft process" in _one_line_error(err)
    assert sorted(p.name for p in run.rglob("*")) == listing  # the second one touched nothing
    code, _ = _run(["train", task, "--resume", run], capsys)
    assert code == 0


def test_folder_lock_is_exclusive_released_and_survives_a_killed_holder(tmp_path):
    lock = atomic.FolderLock(tmp_path).acquire()
    with pytest.raises(atomic.FolderLocked) as info:
        atomic.FolderLock(tmp_path).acquire()
    assert info.value.holder == str(os.getpid())
    lock.release()
    assert not (tmp_path / atomic.LOCK_NAME).exists()
    script = f"import os; from mmsft import atomic; atomic.FolderLock({str(tmp_path)!r}).acquire(); os.kill(os.getpid(), 9)"
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    assert (tmp_path / atomic.LOCK_NAME).exists()  # the file stays, the lock died with its holder
    with atomic.FolderLock(tmp_path):
        pass


# -- no code from files ----------------------------------------------------------------------------------------
class Bomb:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert):
    from mmsft.pipeline import train
    from mmsft.spec import build_run_config

    root = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_CACHE", str(root / "cache"))
        return train(build_run_config(str(_task(root, tiny_bert)), None, ["train.epochs=1"]), root / "run")


@pytest.mark.parametrize("planted", ["model/adapters/full/pytorch_model.bin", "model/heads.pt", "model/training_args.bin"])
def test_a_crafted_pickle_in_a_run_folder_is_never_unpickled_by_eval_or_predict(finished_run, tmp_path, monkeypatch, capsys, planted):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "PWNED"
    torch.save({"state": Bomb(marker)}, run / planted)
    if planted.endswith("pytorch_model.bin"):  # the fallback a loader would take: no safetensors next to it
        (run / "model" / "adapters" / "full" / "model.safetensors").unlink()

    def no_pickle(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    for argv in (["eval", run], ["predict", run, "profit rose"]):
        code, err = _run(argv, capsys)
        line = _one_line_error(err)
        assert code == 2 and "pickle" in line and Path(planted).name in line, line
    assert not marker.exists()


def test_a_damaged_model_file_is_a_one_line_error(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "model" / "heads.safetensors").write_bytes(b"not a safetensors file")
    code, err = _run(["eval", run], capsys)
    assert code == 2 and "the saved model cannot be loaded" in _one_line_error(err)


@pytest.mark.parametrize("model_type", ["bert", "evil_bert"])
def test_a_backbone_with_its_own_python_code_never_runs_it(tmp_path, tiny_bert, isolated, capsys, model_type):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(tiny_bert, evil)
    marker = tmp_path / "PWNED"
    config = json.loads((evil / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil_code.EvilConfig", "AutoModel": "evil_code.EvilModel"})
    (evil / "config.json").write_text(json.dumps(config))
    (evil / "evil_code.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                       "from transformers import BertConfig as EvilConfig, BertModel as EvilModel\n")
    task = _task(tmp_path, evil)
    code, err = _run(["train", task, "--output", tmp_path / "run", "train.epochs=1"], capsys)
    if model_type == "bert":  # a known architecture: transformers' own class, the file is ignored
        assert code == 0
    else:
        assert code == 2 and "never runs code from model files" in _one_line_error(err)
        assert not (tmp_path / "run").exists()
    assert not marker.exists()


def test_resource_errors_from_other_commands_are_one_line(tmp_path, capsys, monkeypatch):
    """Any command: a machine error (here a read-only folder for the task list) is one line and exit 2."""
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    monkeypatch.setattr("mmsft.spec.list_names", denied)
    code, err = _run(["tasks", "list"], capsys)
    assert code == 2 and "Permission denied" in _one_line_error(err)
