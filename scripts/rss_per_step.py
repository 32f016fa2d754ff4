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

import torch


def rss_mb() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    task, adapter, steps, *overrides = sys.argv[1:]
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config
    from mmsft.training.callbacks import Callback
    from mmsft.training.runner import Runner

    cfg = build_run_config(task, adapter, [f"train.max_steps={steps}", "train.early_stopping.patience=0", *overrides])
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    session = build_session(cfg)
    prepared = session.prepared
    print("loaded: rss %d MB, peak %d MB" % rss_mb(), flush=True)

    class Probe(Callback):
        def on_step_end(self, runner, state) -> None:
            print("step %d: rss %d MB, peak %d MB" % (state.step, *rss_mb()), flush=True)

    with tempfile.TemporaryDirectory(prefix="mmsft-rss-") as tmp:
        Runner(cfg.train, session.model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
               lambda model: {}, tmp, callbacks=[Probe()]).fit()
    print("done: rss %d MB, peak %d MB" % rss_mb(), flush=True)


if __name__ == "__main__":
    main()
