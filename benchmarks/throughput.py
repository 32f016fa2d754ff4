"""How close training comes to this machine's limit: matmul peak, achieved FLOP/s (MFU), memory, profile.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py [--rows finance_sentiment:lora ...] [--steps 30]

First measures the CPU's matmul peak in fp32 and bf16 on the shapes the models use (threads stated),
then, for each row, trains STEPS optimizer steps in a fresh process (benchmarks/throughput_row.py):
samples/s, FLOPs per sample (torch.utils.flop_counter, forward + backward as trained), achieved FLOP/s
and its ratio to the peak of the precision trained in (MFU), RSS after load and at the peak, the share of
padded positions, and where the step time goes (profiler self time by category, top operators).
Writes benchmarks/results/throughput.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
# (task, adapter, steps scale, overrides): the rows
# rows with no precision override train as ``train.mixed_precision: auto`` picks; where that is bf16, the fp32 rows
# beside them measure what bf16 buys; the ``release`` rows measure training memory with live tensors, not the heap
# the torch_dropout rows: nn.Dropout's and sdpa's bernoulli_ masks instead of mmsft's (what the default buys)
FP32, RELEASE, TORCH_DROPOUT = "train.mixed_precision=no", "train.cpu_allocator=release", "train.cpu_dropout=torch"
ROWS = [("finance_sentiment", "full", 1.0, []), ("finance_sentiment", "lora", 1.0, []), ("finance_sentiment", "frozen_top2", 1.0, []),
        ("finance_sentiment", "full", 1.0, [TORCH_DROPOUT]), ("finance_sentiment", "lora", 1.0, [TORCH_DROPOUT]),
        ("finance_sentiment", "full", 1.0, [FP32]), ("finance_sentiment", "lora", 1.0, [FP32]),
        ("finance_sentiment", "full", 1.0, [RELEASE]), ("finance_sentiment", "lora", 1.0, [RELEASE]),
        ("translation_en_de", "lora", 0.3, ["train.batch_size=16"]),
        ("translation_en_de", "lora", 0.3, ["train.batch_size=16", "train.gradient_checkpointing=true", "train.cpu_allocator=release"]),
        ("traffic_vehicles", "detector_top3", 0.3, [])]

# (name, m, k, n): a 2048 square, MiniLM's attention projection and MLP (32 x 40 tokens), SmolLM2's MLP (16 x 160)
PEAK_SHAPES = [("square 2048", 2048, 2048, 2048), ("MiniLM qkv 1280x384x384", 1280, 384, 384),
               ("MiniLM MLP 1280x384x1536", 1280, 384, 1536), ("SmolLM2 MLP 2560x576x1536", 2560, 576, 1536)]


def peaks(threads: int) -> dict:
    import torch

    from mmsft.training.precision import matmul_gflops

    torch.set_num_threads(threads)
    table = {}
    for dtype, precision in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        table[precision] = {name: round(matmul_gflops(dtype, (m, k, n), min_seconds=0.5, budget_seconds=3.0), 2)
                            for name, m, k, n in PEAK_SHAPES}
    return {"threads": threads, "gflops": table, "peak_gflops": {p: max(v.values()) for p, v in table.items()}}


def label(row: dict) -> str:
    """The adapter and any setting beyond the batch size (e.g. gradient checkpointing), so two rows of one pair read apart."""
    extra = [o.split(".", 1)[-1] for o in row.get("overrides", []) if not o.startswith("train.batch_size=")]
    return row["adapter"] + (f" ({', '.join(extra)})" if extra else "")


def run_row(task: str, adapter: str, steps: int, overrides: list[str]) -> dict:
    cmd = [sys.executable, str(HERE / "throughput_row.py"), task, adapter, str(steps), *overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode:
        raise SystemExit(f"throughput row {task}/{adapter} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def finish(row: dict, peak: dict) -> dict:
    achieved = row["flops_per_sample"] * row["samples_per_second"] / 1e9
    row.update(achieved_gflops=round(achieved, 2), peak_gflops=peak["peak_gflops"][row["precision"]],
               training_memory_mb=round(row["peak_rss_mb"] - row["rss_after_load_mb"], 1))
    row["mfu"] = round(achieved / row["peak_gflops"], 4)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['task']}\n{label(r)}" for r in rows]
    cats = sorted({c for r in rows for c in r["profile"]["categories"]})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    ax1.barh(labels, [100 * r["mfu"] for r in rows], color="#4c72b0")
    ax1.axvline(30, color="grey", ls="--", lw=1)
    ax1.set_xlabel("MFU, % of the measured matmul peak"), ax1.invert_yaxis()
    left = [0.0] * len(rows)
    for cat in cats:
        share = [100 * r["profile"]["categories"].get(cat, 0) for r in rows]
        ax2.barh(labels, share, left=left, label=cat)
        left = [a + b for a, b in zip(left, share)]
    ax2.set_xlabel("share of profiled step time, %"), ax2.invert_yaxis(), ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bf16_sentence(peak: dict) -> str:
    """What the two peaks mean for ``train.mixed_precision: auto`` on this CPU."""
    from mmsft.training.precision import BF16_MIN_SPEEDUP

    ratio = peak["peak_gflops"]["bf16"] / peak["peak_gflops"]["fp32"]
    if ratio >= BF16_MIN_SPEEDUP:
        return (f"This CPU runs bf16 matmuls natively, {ratio:.1f}x its fp32 peak (AVX512-BF16 / AMX): `train.mixed_precision: auto` "
                "(mmsft/training/precision.py) measures the same ratio at start-up and trains in bf16 autocast here; the fp32 rows "
                "(`mixed_precision=no`) show what that buys.")
    return (f"bf16 runs at {ratio:.1%} of fp32's peak on this CPU (no AVX512-BF16 / AMX: torch emulates it): "
            "`train.mixed_precision: auto` (mmsft/training/precision.py) measures the same ratio at start-up and trains in fp32 here.")


def render(result: dict, command: str) -> str:
    peak, rows = result["peak"], result["rows"]
    lines = header("Throughput and MFU: how close training comes to this CPU's limit", command)
    lines += [f"- Load: {result['load']}; torch threads {peak['threads']} in every row (what else ran: the Note above, MMSFT_BENCH_NOTE).", "",
              "## Matmul peak (GFLOP/s, best of repeated runs)", "", "| shape | fp32 | bf16 |", "|---|---|---|"]
    lines += [f"| {name} | {peak['gflops']['fp32'][name]} | {peak['gflops']['bf16'][name]} |" for name, *_ in PEAK_SHAPES]
    lines += ["", f"Peak used for MFU: fp32 {peak['peak_gflops']['fp32']} GFLOP/s, bf16 {peak['peak_gflops']['bf16']} GFLOP/s; each row "
              "against the peak of the precision it trains in. " + bf16_sentence(peak), "",
              "## Rows", "", "| task | adapter | precision | samples/s | GFLOP / sample | achieved GFLOP/s | MFU | peak RSS MB | RSS after load MB | training memory MB | padded |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pad = "—" if r["padding_share"] is None else f"{100 * r['padding_share']:.1f}%"
        lines.append(f"| {r['task']} | {label(r)} | {r['precision']} | {r['samples_per_second']:.1f} | {r['flops_per_sample'] / 1e9:.2f} | "
                     f"{r['achieved_gflops']:.1f} | {100 * r['mfu']:.1f}% | {r['peak_rss_mb']:.0f} | {r['rss_after_load_mb']:.0f} | "
                     f"{r['training_memory_mb']:.0f} | {pad} |")
    lines += ["", "Training memory = peak RSS minus RSS after the model and data are loaded. MFU = FLOPs per sample (forward + backward, counted) "
              "x samples/s / the peak above; samples/s covers the Runner's whole loop (data, forward, backward, clipping, update).", "",
              "## Where the step time goes (profiler, self CPU time, share of the step)", ""]
    for r in rows:
        cats = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["profile"]["categories"].items())
        ops = ", ".join(f"`{o['op']}` {100 * o['share']:.0f}%" for o in r["profile"]["top_ops"][:5])
        lines += [f"- **{r['task']} / {label(r)}**: {cats}. Top operators: {ops}."]
    lines += memory_section(rows)
    lines += ["", "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def memory_section(rows: list[dict]) -> list[str]:
    """Training memory counted in its parts on each row's longest batch: what autograd saves, gradients, AdamW moments."""
    counted = [r for r in rows if r.get("memory") and r["memory"]["batch_shape"]]
    if not counted:
        return []
    lines = ["", "## Where training memory goes (counted on the longest training batch)", "",
             "MB that autograd keeps for backward after one forward of the batch of the longest samples (storages counted once), "
             "beside the trainable state that full fine-tuning adds: gradients and AdamW's two moments.", "",
             "| task | adapter | batch | saved for backward | of which attention | of which masks | gradients | optimizer state | total |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in counted:
        m = r["memory"]
        saved = sum(m["saved_mb"].values())
        total = saved + m["gradients_mb"] + m["optimizer_state_mb"]
        lines.append(f"| {r['task']} | {label(r)} | {m['batch_shape'][0]} x {m['batch_shape'][1]} | {saved:.0f} | "
                     f"{m['saved_mb'].get('attention scores and probabilities', 0):.0f} | {m['saved_mb'].get('dropout and attention masks', 0):.0f} | "
                     f"{m['gradients_mb']:.0f} | {m['optimizer_state_mb']:.0f} | {total:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", help="TASK:ADAPTER pairs (default: every row of the report)")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per text-classification row (others scaled)")
    args = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    chosen = ROWS if not args.rows else [r for r in ROWS if f"{r[0]}:{r[1]}" in args.rows]
    start = measured()
    peak = peaks(threads)
    print(f"[throughput] peak GFLOP/s: {peak['peak_gflops']}", flush=True)
    rows = []
    for task, adapter, scale, overrides in chosen:
        row = finish(run_row(task, adapter, max(5, round(args.steps * scale)), overrides), peak)
        print(f"[throughput] {task}/{adapter}: {row['samples_per_second']:.1f} samples/s, MFU {100 * row['mfu']:.1f}%, "
              f"training memory {row['training_memory_mb']:.0f} MB", flush=True)
        rows.append(row)
    result = {"peak": peak, "rows": rows, "load": f"1-minute load average {start['load_before']} at the start ({start['measured_at']})"}
    write_json(RESULTS / "throughput.json", result)
    plot(rows, RESULTS / "throughput.png")
    (RESULTS / "throughput.md").write_text(render(result, f"OMP_NUM_THREADS={threads} " + command_line("throughput.py")))
    print((RESULTS / "throughput.md").read_text())


if __name__ == "__main__":
    main()
