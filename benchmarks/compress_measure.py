"""Measurements of the compress benchmark's variants (one thread, fresh process): test accuracy, stored
parameters and bytes, CPU latency at batch 1 and 32; BLEU / chrF for the translation stages."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

TASKS = ["finance_sentiment", "banking77_intent"]
QUICK_TEST = 128  # --quick measures on the first 128 test samples


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return round(1000 * sorted(times)[len(times) // 2], 3)


def stored(run: Path, onnx: bool) -> tuple[int, float]:
    """(non-zero stored numbers, MB) of a run's weight files (tokenizer files excluded)."""
    from safetensors.torch import load_file

    if onnx:
        import onnx as onnx_lib
        from onnx import numpy_helper

        path = run / "model" / "model.onnx"
        model = onnx_lib.load(str(path))
        nonzero = sum(int((numpy_helper.to_array(t) != 0).sum()) for t in model.graph.initializer)
        return nonzero, os.path.getsize(path) / 2**20
    files = [p for p in (run / "model").rglob("*.safetensors")]
    nonzero = sum(int((t != 0).sum()) for f in files for t in load_file(str(f)).values())
    return nonzero, sum(p.stat().st_size for p in files) / 2**20


def measure(run: Path, onnx: bool, repeats_b1: int = 50, repeats_b32: int = 15, test_limit: int | None = None) -> dict:
    import torch

    from mmsft.compress import onnx_export
    from mmsft.pipeline import load_run

    torch.set_num_threads(1)
    session = load_run(run)
    cfg, kind = session.cfg, session.kind
    prepared = kind.prepare(cfg, session.processor, kind.load_data(cfg))
    if test_limit:  # --quick: the first samples of test only
        prepared.splits["test"] = prepared.splits["test"].select(range(min(test_limit, len(prepared.splits["test"]))))
        prepared.lengths["test"] = prepared.lengths["test"][:test_limit]
    test = prepared.splits["test"]
    items = [test[i] for i in range(min(64, len(test)))]
    strip = lambda b: {k: v for k, v in b.items() if k != "labels"}  # noqa: E731
    singles = [strip(prepared.collate([it])) for it in items[:repeats_b1]]
    batch32 = strip(prepared.collate(items[:32]))
    head = next(iter(cfg.model.heads))
    if onnx:
        sess = onnx_export.session(run / "model" / "model.onnx", threads=1)
        metrics = onnx_export.evaluate(sess, cfg, kind, prepared, "test")
        forward = lambda b: onnx_export.run(sess, b)  # noqa: E731
    else:
        metrics = kind.evaluate(cfg, session.model, prepared, "test", session.processor).metrics
        model = session.model.eval()
        forward = lambda b: model(**b, heads=[head])  # noqa: E731
    with torch.inference_mode():
        cycle = iter(range(10**9))
        b1 = _median_ms(lambda: forward(singles[next(cycle) % len(singles)]), repeats_b1)
        b32 = _median_ms(lambda: forward(batch32), repeats_b32)
    params, size = stored(run, onnx)
    return {"accuracy": round(float(metrics["accuracy"]), 4), "params": params, "size_mb": round(size, 2),
            "latency_b1_ms": b1, "latency_b32_ms": b32, "threads": torch.get_num_threads(), "f1_macro": metrics.get("f1_macro")}


def measure_generation(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {"bleu": metrics["test"].get("bleu"), "chrf": metrics["test"].get("chrf"), "eos_rate": metrics["test"].get("eos_rate"),
            "train_seconds": metrics.get("train_seconds"), "steps": metrics.get("steps"), "train_samples": (metrics.get("data") or {}).get("train")}


def measure_stage(stage: str, folder: Path, quick: bool) -> dict:
    limit, reps = (QUICK_TEST, (10, 5)) if quick else (None, (50, 15))
    if stage.startswith("gen:"):
        return measure_generation(folder)
    if stage in ("ties", "ties_base_30"):
        return {t: measure(folder / t, False, *reps, test_limit=limit) for t in TASKS}
    return measure(folder, stage.endswith(":onnx"), *reps, test_limit=limit)
