"""Shared bits of the benchmark scripts: machine/version header, subprocess training, result files."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# benchmarks measure this checkout's mmsft, whatever an (editable) install elsewhere points at
sys.path.insert(0, str(RESULTS.parent.parent))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def versions() -> str:
    import accelerate
    import peft
    import torch
    import transformers

    return (f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"peft {peft.__version__}, accelerate {accelerate.__version__}")


def command_line(script: str) -> str:
    """How this benchmark was invoked, quoted so that it can be pasted back into a shell."""
    return shlex.join(["python", f"benchmarks/{script}", *sys.argv[1:]])


def header(title: str, command: str) -> list[str]:
    lines = [f"# {title}", "", f"- Command: `{command}`", f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- Machine: {machine()}", f"- Versions: {versions()}"]
    note = os.environ.get("MMSFT_BENCH_NOTE")  # e.g. other jobs shared the CPU during the run
    return lines + ([f"- Note: {note}"] if note else []) + [""]


def measured() -> dict:
    """When a benchmark row starts and the 1-minute load average just before (~0 idle; +1 per busy core)."""
    return {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": round(os.getloadavg()[0], 2)}


def train_in_subprocess(task: str, adapter: str | None, out: Path, overrides: list[str] = ()) -> dict:
    """Run `mmsft train` in a fresh process (clean peak-memory figure); returns its metrics.json.
    ``adapter`` None: the task's own adapter stack."""
    cmd = [sys.executable, "-m", "mmsft", "train", task, *(["--adapter", adapter] if adapter else []), "--output", str(out), *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "metrics.json").read_text())


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
