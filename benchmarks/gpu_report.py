"""Rows and Markdown of the GPU check's report (``gpu.json`` / ``gpu.md``), with the committed CPU figures beside.

The CPU figures are read from this checkout's ``benchmarks/results``: finance_sentiment LoRA / full
from ``adapters.json`` (same task defaults, 3 epochs), traffic_vehicles from ``detection.json``
(its mmsft top3 row: the task's default detector, 6 epochs, so its mAP is not the same budget as the
GPU's 2 epochs).  The tiny LM has no CPU row.  ``gpu.json`` holds one entry per part; a run replaces
its own part and keeps the other.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from common import RESULTS, header

FIELDS = ("device", "mixed_precision", "epochs_completed", "steps", "samples_per_second", "train_seconds", "peak_memory_mb")
KEY_METRICS = {"text_classification": ("accuracy", "f1_macro"), "generation": ("bleu", "chrf", "rouge_l", "eos_rate"),
               "detection": ("map50", "map50_95")}


def _read(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def cpu_reference(check: str) -> Optional[dict]:
    """The committed CPU row for a check, or None."""
    if check.startswith("finance_sentiment-"):
        adapter = check.split("-", 1)[1]
        for row in _read("adapters.json") or []:
            if row.get("task") == "finance_sentiment" and row.get("adapter") == adapter:
                return {"source": "benchmarks/results/adapters.json", "accuracy": row["value"], "f1_macro": row.get("f1_macro"),
                        "samples_per_second": row["samples_per_second"], "train_seconds": row["train_seconds"],
                        "peak_memory_mb": row["peak_memory_mb"], "epochs": row.get("epochs"), "measured_at": row.get("measured_at")}
    if check == "traffic_vehicles":
        for row in _read("detection.json") or []:
            if row.get("runner") == "mmsft" and row.get("adapter") == "top3":
                epochs = next((o.split("=")[1] for o in row.get("overrides", []) if o.startswith("train.epochs=")), None)
                return {"source": "benchmarks/results/detection.json", "map50": row["map50"], "map50_95": row["map50_95"],
                        "samples_per_second": row["images_per_second"], "train_seconds": row["train_seconds"],
                        "peak_memory_mb": row["peak_memory_mb"], "epochs": epochs, "measured_at": row.get("measured_at")}
    return None


def check_row(name: str, status: str, seconds: float, run_dir: Optional[Path]) -> dict:
    """One training check: its metrics.json figures (when it finished) and the CPU row beside them."""
    row = {"check": name, "status": status, "wall_seconds": round(seconds, 1), "cpu_reference": cpu_reference(name)}
    metrics = run_dir / "metrics.json" if run_dir else None
    if metrics and metrics.is_file():
        m = json.loads(metrics.read_text())
        row.update({k: m.get(k) for k in FIELDS})
        row["peak_memory_kind"] = "GPU max_memory_allocated" if str(m.get("device", "")).startswith("cuda") else "process peak RSS"
        row["test"] = m.get("test", {})
        row["trainable_params"] = m.get("trainable_params")
    return row


def _fmt(value, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


def _metrics(test: Optional[dict]) -> str:
    if not test:
        return "—"
    keys = next((ks for ks in KEY_METRICS.values() if ks[0] in test), tuple(test)[:2])
    return ", ".join(f"{k} {_fmt(test.get(k))}" for k in keys if k in test)


def render_part(part: dict) -> list[str]:
    smoke = part["mode"] == "cpu-smoke"
    dev, probe = part.get("device") or {}, part.get("probe") or {}
    lines = [f"## {part['part']}", "",
             f"- Mode: {'**CPU SMOKE RUN** (fp32, tiny subsets): the figures only show the code path works' if smoke else 'GPU, bf16'}; "
             f"measured {part['measured_at']}; wall {part['wall_seconds']:.0f} s of a {part['budget_seconds']} s budget",
             f"- Device: {dev.get('name', 'cpu')}" + (f", {dev['memory_mib']:,} MiB, compute capability {dev['capability']}, CUDA {dev.get('torch_cuda')}"
                                                     if dev.get("name") else ""),
             "- Versions there: " + ", ".join(f"{k} {v}" for k, v in (probe.get("versions") or {}).items() if v),
             f"- Bundle: {part['bundle']['path']} ({part['bundle']['mib']:.1f} MiB; wheels: {', '.join(probe.get('bundle_wheels') or []) or 'none'})"]
    for key in ("warnings", "problems"):
        if probe.get(key):
            lines.append(f"- Probe {key}: " + "; ".join(probe[key]))
    lines += ["", "| step | status | s |", "|---|---|---|"] + [f"| {s['title']} | {s['status']} | {s['seconds']:.1f} |" for s in part["steps"]]
    lines += ["", "| check | status | precision | epochs | train samples/s | train s | peak MiB | test | CPU test | CPU samples/s | CPU peak MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in part["checks"]:
        cpu = r.get("cpu_reference") or {}
        cpu_test = _metrics({k: v for k, v in cpu.items() if k in ("accuracy", "f1_macro", "map50", "map50_95")})
        cpu_test += f" ({cpu['epochs']} ep)" if cpu.get("epochs") else ""
        lines.append(f"| {r['check']} | {r['status']} | {_fmt(r.get('mixed_precision'))} | {_fmt(r.get('epochs_completed'), 'g')} | "
                     f"{_fmt(r.get('samples_per_second'), '.1f')} | {_fmt(r.get('train_seconds'), '.1f')} | {_fmt(r.get('peak_memory_mb'), '.0f')} | "
                     f"{_metrics(r.get('test'))} | {cpu_test} | {_fmt(cpu.get('samples_per_second'), '.1f')} | {_fmt(cpu.get('peak_memory_mb'), '.0f')} |")
    kinds = {r.get("peak_memory_kind") for r in part["checks"] if r.get("peak_memory_kind")}
    lines += ["", f"Peak MiB: {', '.join(sorted(kinds)) or '—'}; the CPU columns are process peak RSS on the 2-core CPU machine "
              "(`adapters.json`, `detection.json`). Samples/s count training steps only (no evaluation).", ""]
    return lines


def render(parts: dict, command: str) -> str:
    title = "GPU check: mmsft on the lent GPU machine"
    try:
        lines = header(title, command)
    except Exception as exc:  # noqa: BLE001 - a broken import must not cost the report (the probe names it)
        lines = [f"# {title}", "", f"- Command: `{command}`", f"- Versions: not read ({type(exc).__name__}: {exc})", ""]
    lines += ["Made by `bash scripts/gpu_check.sh text|vision` on the GPU machine with the bundles of `bash scripts/gpu_bundle.sh`",
              "(docs/gpu.md). The Machine / Versions lines above are the process that wrote this file; each part lists the",
              "versions its runs saw.", ""]
    for name in ("text", "vision"):
        if name in parts:
            lines += render_part(parts[name])
    return "\n".join(lines)
