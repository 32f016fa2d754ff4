"""The Markdown report every run writes (``report.md``)."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from .plots import curves_png


def environment() -> str:
    import torch
    import transformers

    try:
        import peft

        peft_v = peft.__version__
    except ImportError:  # pragma: no cover
        peft_v = "-"
    cpu = platform.processor() or platform.machine()
    return (f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"peft {peft_v}; {platform.system()} {cpu}, {torch.get_num_threads()} threads"
            + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(session, run_dir: Path, summary: dict, test) -> Path:
    cfg, kind = session.cfg, session.kind
    metric = cfg.train.early_stopping.metric
    lines = [
        f"# {cfg.name} — {cfg.adapter_label}",
        "",
        f"{cfg.description}".strip(),
        "",
        f"- Command: `{' '.join(['mmsft', *sys.argv[1:]]) if Path(sys.argv[0]).name == 'mmsft' else 'mmsft.pipeline.train'}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- Environment: {environment()}",
        f"- Backbone: `{cfg.model.backbone}`; adapters `{cfg.adapter_label}`; device {summary['device']}, mixed precision {summary['mixed_precision']}",
        f"- Data sizes: {summary.get('data')}",
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in summary["test"].items()],
        "",
        "## Training",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(summary[k])} |" for k in ("trainable_params", "total_params", "steps", "epochs_completed", "best_validation",
                                                  "best_step", "stopped_early", "features_cached", "train_seconds", "samples_per_second", "peak_memory_mb", "training_memory_mb")],
        "",
    ]
    if curves_png(run_dir / "metrics.jsonl", run_dir / "curves.png", metric):
        lines += ["![training curves](curves.png)", ""]
    lines += kind.report_sections(cfg, run_dir, test, session.data)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
