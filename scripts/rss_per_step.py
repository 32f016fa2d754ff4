"""Resident memory after every optimizer step of a short training run: tells a leak or a per-shape cache from a peak.

    OMP_NUM_THREADS=1 python scripts/rss_per_step.py TASK ADAPTER STEPS [key=value ...]

Builds the task's session, trains STEPS steps through mmsft's Runner (no evaluation) and prints, after loading,
after each step and at the end, the process's current and peak RSS (VmRSS, VmHWM) in MB.  How the bf16 growth
in benchmarks/results/throughput.md was found: finance_sentiment lora 80 train.cpu_allocator=release grows
~10 MB a step; with train.mixed_precision=no, or train.pad_to_multiple_of=16, it stays flat.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from throughput_row import bare_runner, load_session, rss_mb  # noqa: E402


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    task, adapter, steps, *overrides = sys.argv[1:]
    from mmsft.training.callbacks import Callback

    session = load_session(task, adapter, [f"train.max_steps={steps}", *overrides])
    print("loaded: rss %d MB, peak %d MB" % rss_mb(), flush=True)

    class Probe(Callback):
        def on_step_end(self, runner, state) -> None:
            print("step %d: rss %d MB, peak %d MB" % (state.step, *rss_mb()), flush=True)

    with tempfile.TemporaryDirectory(prefix="mmsft-rss-") as tmp:
        bare_runner(session, tmp, callbacks=[Probe()]).fit()
    print("done: rss %d MB, peak %d MB" % rss_mb(), flush=True)


if __name__ == "__main__":
    main()
