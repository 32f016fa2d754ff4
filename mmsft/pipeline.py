"""Train / evaluate / predict for any task kind: the glue between config, kind, adapter and runner."""
from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import paths
from .adapters import ADAPTERS
from .kinds import KINDS, EvalOutput
from .spec import RunConfig, load_run_config


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Session:
    """Everything built for one run: config, kind, adapter, data, model, processor, prepared splits."""

    cfg: RunConfig
    kind: object
    adapter: object
    data: object
    model: object
    processor: object
    prepared: object = None


def build_session(cfg: RunConfig) -> Session:
    """Load data and model and apply the adapter.  All bad input fails here, before any output."""
    kind, adapter = KINDS.get(cfg.kind), ADAPTERS.get(cfg.adapter.method)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = kind.load_data(cfg)
    set_seed(cfg.train.seed)
    model, processor = kind.build_model(cfg, data)
    set_seed(cfg.train.seed)  # adapter weights (LoRA A matrices, heads) depend only on the seed
    adapter.apply(model, cfg.adapter.options, getattr(model, "zoo_entry", None))
    prepared = kind.prepare(cfg, processor, data)
    return Session(cfg, kind, adapter, data, model, processor, prepared)


def new_run_dir(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return paths.runs_dir() / f"{cfg.name}-{cfg.adapter.method}-{stamp}"


def train(cfg: RunConfig, run_dir: Optional[Path] = None, resume: bool = False, callbacks=()) -> Path:
    """Fine-tune, evaluate on test, save the model and write the report; returns the run folder."""
    from .reporting.report import write_report
    from .saving import save_model, write_json
    from .training.batching import cache_features
    from .training.runner import Runner, make_accelerator
    from .training.sampling import sampler_groups

    accelerator = make_accelerator(cfg.train)
    run_dir = Path(run_dir or _same_on_every_rank(new_run_dir(cfg)))
    if run_dir.exists() and not resume and any(run_dir.iterdir()):  # every rank checks before anything is written
        from .errors import UserError

        raise UserError("run folder exists and is not empty (pass --resume to continue it)", where=str(run_dir))
    # rank 0 builds (and writes the Arrow/token caches) first; the others wait at its barrier, so every rank has
    # checked the run folder above before rank 0 writes into it
    with accelerator.main_process_first():
        session = build_session(cfg)
    groups = sampler_groups(cfg.train, session.prepared)  # balanced sampler: fails before any output
    counts = session.model.param_counts()
    if accelerator.is_main_process:  # multi-process: one writer, the others wait for the folder
        import yaml

        from .config import to_dict

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "params.json", counts)
        print(f"[mmsft] {cfg.name} / {cfg.adapter.method}: trainable {counts['trainable_params']:,} of "
              f"{counts['total_params']:,} parameters ({counts['trainable_percent']}%)")
    accelerator.wait_for_everyone()
    session.model.to(accelerator.device)
    prepared = session.prepared
    cached = cfg.train.cache_features and session.adapter.backbone_frozen(cfg.adapter.options) and hasattr(session.model, "encode")
    encode_seconds = 0.0
    if cached:
        tick = time.perf_counter()
        prepared = cache_features(session.model, prepared, cfg.train.eval_batch_size, accelerator.device)
        encode_seconds = time.perf_counter() - tick

    def evaluate(model):
        return session.kind.evaluate(cfg, model, prepared, "validation", session.processor).metrics

    runner = Runner(cfg.train, session.model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
                    evaluate, run_dir, accelerator=accelerator, callbacks=callbacks, groups=groups)
    result = runner.fit(resume=resume)
    model = accelerator.unwrap_model(runner.model)
    test = session.kind.evaluate(cfg, model, prepared, "test", session.processor)
    summary = {
        "task": cfg.name, "adapter": cfg.adapter.method, "backbone": cfg.model.backbone,
        "test": _plain(test.metrics), "best_validation": result.state.best_metric, "best_step": result.state.best_step,
        "steps": result.state.step, "epochs_completed": result.state.epoch, "stopped_early": result.state.stopped_early,
        "train_seconds": round(result.state.train_seconds + encode_seconds, 2), "feature_cache_seconds": round(encode_seconds, 2),
        "samples_per_second": round(result.samples_per_second, 2), "peak_memory_mb": round(result.peak_memory_mb, 1),
        "features_cached": cached, "device": str(accelerator.device), "cpu_allocator_tuned": runner.allocator_tuned,
        "mixed_precision": accelerator.mixed_precision,
        "data": session.kind.data_summary(session.data), **counts,
    }
    if accelerator.is_main_process:
        save_model(session, model, run_dir / "model")
        write_json(run_dir / "metrics.json", summary)
        write_report(session, run_dir, summary, test)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # only a crashed run needs them
    accelerator.wait_for_everyone()
    return run_dir


def _same_on_every_rank(value):
    """Rank 0's value on every rank (a time-stamped run folder name must not differ by a second)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> Session:
    """Rebuild a trained run (config snapshot + saved model) for evaluation or prediction;
    ``overrides`` change data and decoding settings (see ``spec.RUN_OVERRIDABLE``)."""
    from .saving import load_model

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, overrides)
    kind, adapter = KINDS.get(cfg.kind), ADAPTERS.get(cfg.adapter.method)
    model, processor = load_model(cfg, kind, adapter, run_dir / "model")
    return Session(cfg, kind, adapter, None, model, processor)


def evaluate_run(run_dir: str | Path, split: str = "test", overrides: list[str] | None = None) -> EvalOutput:
    session = load_run(run_dir, overrides)
    session.data = session.kind.load_data(session.cfg)
    prepared = session.kind.prepare(session.cfg, session.processor, session.data)
    return session.kind.evaluate(session.cfg, session.model, prepared, split, session.processor)


def predict_run(run_dir: str | Path, inputs: list[str], out_dir: str | Path | None = None,
                overrides: list[str] | None = None) -> list[dict]:
    """Predict on ``inputs``; kinds that write files (annotated images) write them to ``out_dir``
    (default ``RUN/predictions``)."""
    session = load_run(run_dir, overrides)
    if session.kind.writes_files:
        out = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
        return session.kind.predict(session.cfg, session.model, session.processor, inputs, out_dir=out)
    return session.kind.predict(session.cfg, session.model, session.processor, inputs)
