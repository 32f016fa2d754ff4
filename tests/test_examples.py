"""examples/: each script runs end to end in a fresh interpreter, as a user would run it (real data, offline zoo)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import PROJECT, SHARED_DATA


def test_quickstart_runs_end_to_end(tmp_path):
    if not (SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt").is_file():
        pytest.skip("no shared Financial PhraseBank copy")
    env = {**os.environ, "MMSFT_RUNS_DIR": str(tmp_path / "runs"), "MMSFT_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("MMSFT_TASKS_PATH", None)
    done = subprocess.run([sys.executable, str(PROJECT / "examples" / "quickstart.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "test metrics: {'accuracy':" in out and "validation: {'accuracy':" in out and "quickstart done:" in out
    work = tmp_path / "runs" / "quickstart"
    runs = [p for p in work.iterdir() if p.name.startswith("run-")]
    exports = [p for p in work.iterdir() if p.name.startswith("export-hf-")]
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
    assert len(exports) == 1 and (exports[0] / "model.safetensors").is_file() and (exports[0] / "export.json").is_file()
