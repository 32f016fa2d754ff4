"""Multi-process data-parallel training (torchrun / accelerate launch) on CPU with gloo."""
import json
import os
import subprocess
import sys

import pytest


def test_two_process_training_shards_batches_and_writes_one_run(toy_task, isolated):
    out = isolated / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "mmsft", "train", str(toy_task), "--adapter", "full", "--output", str(out), "train.epochs=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 72 train rows, batch 8 -> 9 batches per epoch; two ranks take 4 each (an equal count keeps them in step)
    assert metrics["steps"] == 8 and metrics["epochs_completed"] == 2
    assert (out / "model" / "adapters" / "full" / "model.safetensors").is_file()
    assert sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line) == 2  # one writer
