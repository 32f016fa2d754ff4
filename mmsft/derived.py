"""Run folders derived from other runs (merged, compressed): the same layout as a trained run, so
``mmsft eval`` / ``predict`` / ``load_run`` read them unchanged.

``config.yaml`` (the source run's config with the new adapters), ``params.json``, ``model/`` (through
``saving.save_model``: each adapter saves itself), the producing command's record (``merge.json``,
``compress.json``) and ``metrics.json`` last.  ``fill_run`` writes into a folder the caller builds
atomically (``atomic.atomic_folder``), so a failure leaves no half-written run.
"""
from __future__ import annotations

from pathlib import Path

from .errors import UserError


def check_new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("output folder exists and is not empty", where=str(out), expected="a new folder")


def fill_run(folder: Path, session, model, summary: dict, records: dict[str, dict] | None = None) -> Path:
    """Write a complete run folder for ``session.cfg`` / ``model`` into ``folder``."""
    import yaml

    from .atomic import write_json, write_text
    from .config import to_dict
    from .saving import save_model

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", yaml.safe_dump(to_dict(session.cfg), sort_keys=False))
    write_json(folder / "params.json", model.param_counts())
    save_model(session, model, folder / "model")
    for name, record in (records or {}).items():
        write_json(folder / name, record, default=str)
    write_json(folder / "metrics.json", summary, default=str)  # last: marks a complete run
    return folder


def plain_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}


def scored_summary(session, model, prepared, name: str, extra: dict) -> dict:
    """Score ``model`` on the test split; the summary a derived run's metrics.json holds."""
    cfg = session.cfg
    test = session.kind.evaluate(cfg, model, prepared, "test", session.processor)
    return {"task": cfg.name, "adapter": cfg.adapter_label, "backbone": cfg.model.backbone, "derived_by": name,
            "test": plain_metrics(test.metrics), **extra, **model.param_counts()}
