"""One row of the throughput report, measured in its own process (so its RSS is its own).

    python benchmarks/throughput_row.py TASK ADAPTER STEPS [key=value ...]   -> one JSON line on stdout

Trains STEPS optimizer steps through mmsft's Runner (the same loop `mmsft train` runs, no evaluation)
and reports samples/s; counts the FLOPs of forward + backward on the first batches with
torch.utils.flop_counter; profiles a few more steps and sorts the self CPU time into matmul /
attention / elementwise / optimizer / data / Python; measures RSS after the model is loaded and at
the peak; and the share of padded positions in the batches trained.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

PROFILED_STEPS = 3
FLOP_BATCHES = 4


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process (VmRSS, VmHWM), MB: what a run's metrics.json reports."""
    from mmsft.training.memory import current_memory_mb, peak_memory_mb

    cpu = torch.device("cpu")
    return current_memory_mb(cpu), peak_memory_mb(cpu)


def category(op: str) -> str:
    name = op.lower()
    if "optimizer.step" in name or "adamw" in name or "_foreach" in name:
        return "optimizer"
    if "dataloader" in name or "collate" in name:
        return "data"
    if any(k in name for k in ("softmax", "scaled_dot_product", "flash_attention", "attention")):
        return "attention"
    if any(k in name for k in ("::mm", "addmm", "bmm", "matmul", "linear", "conv", "baddbmm")):
        return "matmul"
    return "elementwise / other"


def batches(runner, count: int):
    from torch.utils.data import DataLoader

    runner.sampler.set_epoch(0)
    loader = DataLoader(runner.dataset, batch_sampler=runner.sampler, collate_fn=runner.collate)
    for i, batch in enumerate(loader):
        if i >= count:
            return
        yield batch


def padding_share(runner, count: int) -> float | None:
    real = total = 0
    for batch in batches(runner, count):
        mask = batch.get("attention_mask")
        if mask is None:
            return None
        real, total = real + int(mask.sum()), total + mask.numel()
    return 1 - real / total if total else None


def grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                                _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """``convolution_backward``'s FLOPs as one forward convolution per gradient asked for.  torch 2.14's own
    formula ignores ``groups`` in the weight gradient, so a depthwise conv's backward counted ``channels``
    times too much (the MobileNet detector read 115% MFU)."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(runner, count: int) -> tuple[float, int]:
    """FLOPs of forward + backward over ``count`` training batches, and the samples they held."""
    from torch.utils.flop_counter import FlopCounterMode

    model, flops, samples = runner.model, 0, 0
    model.train()
    for batch in batches(runner, count):
        counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop})
        with counter:
            loss, _ = runner.objective.loss(model, batch)
            loss.backward()
        model.zero_grad(set_to_none=True)
        flops += counter.get_total_flops()
        samples += len(next(v for v in batch.values() if torch.is_tensor(v)))
    return flops, samples


def profile_steps(runner, count: int) -> dict:
    """Self CPU seconds per category over ``count`` full training steps (data, forward, backward, update)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    model, optimizer = runner.model, runner.optimizer
    loader = iter(batches(runner, count))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tick = time.perf_counter()
        for _ in range(count):
            with record_function("dataloader"):
                batch = next(loader)
            loss, _ = runner.objective.loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        wall = time.perf_counter() - tick
    seconds: dict[str, float] = {}
    top = []
    for event in prof.key_averages():
        own = event.self_cpu_time_total / 1e6
        seconds[category(event.key)] = seconds.get(category(event.key), 0.0) + own
        top.append((own, event.key))
    seconds["python / framework (unaccounted)"] = max(0.0, wall - sum(seconds.values()))
    top.sort(reverse=True)
    return {"wall_seconds": wall, "categories": {k: round(v / wall, 4) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"op": name, "share": round(own / wall, 4)} for own, name in top[:8]]}


def longest_batch(runner):
    """The train batch of the ``batch_size`` longest samples: where activation memory peaks."""
    lengths = runner.sampler.lengths if hasattr(runner.sampler, "lengths") else None
    order = sorted(range(len(runner.dataset)), key=lambda i: -lengths[i]) if lengths is not None else range(len(runner.dataset))
    return runner.collate([runner.dataset[i] for i in list(order)[: runner.spec.batch_size]])


def saved_kind(t: torch.Tensor, length) -> str:
    """What a tensor autograd keeps for backward is, by dtype and shape."""
    if t.dtype in (torch.uint8, torch.bool):
        return "dropout and attention masks"
    if t.grad_fn is None and not t.requires_grad and t.is_floating_point() and t.dim() == 2 and t.shape[0] != length:
        return "frozen weights' bf16 casts (kept between steps)"
    if length is not None and t.dim() >= 3 and t.shape[-1] == length and t.shape[-2] == length:
        return "attention scores and probabilities"
    return f"other activations ({str(t.dtype).replace('torch.', '')})"


def memory_breakdown(runner) -> dict:
    """MB that autograd saves for backward on the longest batch, by kind, beside the trainable state (gradients and
    optimizer moments): the two parts of training memory, counted rather than inferred from RSS."""
    from mmsft.training.batching import to_device

    batch = to_device(longest_batch(runner), runner.accelerator.device)
    ids = next((v for v in batch.values() if torch.is_tensor(v) and v.dim() == 2), None)  # token ids; None for images
    length = None if ids is None else ids.shape[1]
    seen: dict[int, tuple[str, int]] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen.setdefault(storage.data_ptr(), (saved_kind(t, length), storage.nbytes()))
        return t

    runner.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), runner.accelerator.autocast():
        loss, _ = runner.objective.loss(runner.model, batch)
    del loss
    kinds: dict[str, float] = {}
    for kind, nbytes in seen.values():
        kinds[kind] = kinds.get(kind, 0.0) + nbytes / 2**20
    trainable = [p for p in runner.model.parameters() if p.requires_grad]
    moments = sum(t.numel() * t.element_size() for s in runner.optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return {"batch_shape": None if ids is None else list(ids.shape), "saved_mb": {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "gradients_mb": round(sum(p.numel() * p.element_size() for p in trainable) / 2**20, 1),
            "optimizer_state_mb": round(moments / 2**20, 1)}


def timed_pass(runner, model, data) -> float:
    """Seconds for one pass of full training steps (forward under the run's autocast, backward, update) over ``data``."""
    tick = time.perf_counter()
    for batch in data:
        with runner.accelerator.autocast():
            loss, _ = runner.objective.loss(model, batch)
        loss.backward()
        runner.optimizer.step()
        runner.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - tick


def load_session(task: str, adapter: str, overrides=()):
    """The task's session for a training probe: torch threads from OMP_NUM_THREADS, no early stopping."""
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    return build_session(build_run_config(task, adapter, ["train.early_stopping.patience=0", *overrides]))


def bare_runner(session, run_dir, callbacks=()):
    """mmsft's Runner on the session's train split, with no evaluation: what the probes time and watch."""
    from mmsft.training.runner import Runner

    p = session.prepared
    return Runner(session.cfg.train, session.model, p.splits["train"], p.collate, p.lengths["train"], lambda model: {}, run_dir,
                  callbacks=callbacks)


def main() -> None:
    task, adapter, steps, *overrides = sys.argv[1:]
    session = load_session(task, adapter, [f"train.max_steps={steps}", *overrides])
    cfg, threads = session.cfg, torch.get_num_threads()
    rss_after_load = rss_mb()[0]
    with tempfile.TemporaryDirectory(prefix="mmsft-throughput-") as tmp:
        runner = bare_runner(session, tmp)
        result = runner.fit()
        peak_rss = rss_mb()[1]  # the training run's peak; counting and profiling below allocate more
        precision = runner.accelerator.mixed_precision
        flops, flop_samples = count_flops(runner, FLOP_BATCHES)
        profiled = profile_steps(runner, PROFILED_STEPS)
        padded = padding_share(runner, min(runner.batches_per_epoch, 50))
        memory = memory_breakdown(runner)
    counts = session.model.param_counts()
    print(json.dumps({
        "task": task, "adapter": adapter, "precision": "fp32" if precision == "no" else precision, "threads": threads,
        "steps": result.state.step, "batch_size": cfg.train.batch_size, "samples_per_second": result.samples_per_second,
        "flops_per_sample": flops / max(flop_samples, 1), "rss_after_load_mb": rss_after_load, "peak_rss_mb": peak_rss,
        "padding_share": padded, "trainable_params": counts["trainable_params"], "total_params": counts["total_params"],
        "profile": profiled, "memory": memory, "overrides": overrides,
    }))


if __name__ == "__main__":
    main()
