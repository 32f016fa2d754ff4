"""Train / evaluate / predict for any task kind: the glue between config, kind, model, adapters and runner.

Every step asks the task kind or the composed model through their interfaces; nothing here
branches on the kind.
"""
from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import paths
from .errors import UserError
from .kinds import EvalOutput
from .registry import KINDS
from .spec import RunConfig, load_run_config


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Session:
    """Everything built for one run: config, kind, data, composed model, processor, prepared splits."""

    cfg: RunConfig
    kind: object
    data: object
    model: object
    processor: object
    prepared: object = None


def build_session(cfg: RunConfig) -> Session:
    """Load data and model and apply the adapters.  All bad input fails here, before any output."""
    from .adapters import apply_adapters
    from .models import build_model

    kind = KINDS.get(cfg.kind)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = kind.load_data(cfg)
    set_seed(cfg.train.seed)
    model, processor = build_model(cfg, kind, data)
    set_seed(cfg.train.seed)  # adapter weights (LoRA A matrices) depend only on the seed
    apply_adapters(model, cfg.adapters)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError(f"nothing would train: adapters {cfg.adapter_label} freeze the backbone and the heads have no weights",
                        where="adapters", expected="an adapter that trains part of the backbone (lora, full, frozen_top2), or a module")
    prepared = kind.prepare(cfg, processor, data)
    return Session(cfg, kind, data, model, processor, prepared)


def new_run_dir(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return paths.runs_dir() / f"{cfg.name}-{cfg.adapter_label}-{stamp}"


def train(cfg: RunConfig, run_dir: Optional[Path] = None, resume: bool = False, callbacks=()) -> Path:
    """Fine-tune, evaluate on test, save the model and write the report; returns the run folder."""
    from .atomic import remove_tree, write_json, write_text
    from .reporting.report import write_report
    from .saving import save_model
    from .training.batching import cache_features
    from .training.objectives import build_objective
    from .training.runner import Runner, make_accelerator
    from .training.sampling import sampler_groups

    accelerator = make_accelerator(cfg.train)
    run_dir = Path(run_dir or _same_on_every_rank(new_run_dir(cfg)))
    if run_dir.exists() and not resume and any(run_dir.iterdir()):  # every rank checks before anything is written
        raise UserError("run folder exists and is not empty (pass --resume to continue it)", where=str(run_dir))
    # rank 0 builds (and writes the Arrow/token caches) first; the others wait at its barrier, so every rank has
    # checked the run folder above before rank 0 writes into it
    with accelerator.main_process_first():
        session = build_session(cfg)
    groups = sampler_groups(cfg.train, session.prepared)  # balanced sampler: fails before any output
    objective = build_objective(cfg.objective)
    counts = session.model.param_counts()
    if accelerator.is_main_process:  # multi-process: one writer, the others wait for the folder
        import yaml

        from .config import to_dict

        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "params.json", counts)
        print(f"[mmsft] {cfg.name} / {cfg.adapter_label}: trainable {counts['trainable_params']:,} of "
              f"{counts['total_params']:,} parameters ({counts['trainable_percent']}%)")
    accelerator.wait_for_everyone()
    session.model.to(accelerator.device)
    prepared = session.prepared
    cached = cfg.train.cache_features and prepared.deterministic_train and session.model.feature_cache_ok()
    encode_seconds = 0.0
    if cached:
        tick = time.perf_counter()
        prepared = cache_features(session.model, prepared, cfg.train.eval_batch_size, accelerator.device)
        encode_seconds = time.perf_counter() - tick

    def evaluate(model):
        return session.kind.evaluate(cfg, model, prepared, "validation", session.processor).metrics

    runner = Runner(cfg.train, session.model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
                    evaluate, run_dir, accelerator=accelerator, callbacks=callbacks, groups=groups, objective=objective)
    result = runner.fit(resume=resume)
    model = accelerator.unwrap_model(runner.model)
    test = session.kind.evaluate(cfg, model, prepared, "test", session.processor)
    summary = {
        "task": cfg.name, "adapter": cfg.adapter_label, "backbone": cfg.model.backbone,
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
        write_report(session, run_dir, summary, test)
        write_json(run_dir / "metrics.json", summary, default=str)  # last: its presence marks a finished run
        remove_tree(run_dir / "checkpoints")  # only a crashed run needs them
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
    if not (run_dir / "metrics.json").is_file():
        raise UserError("this run's training did not finish, so it has no final model to score",
                        where=str(run_dir), expected=f"a finished run, or `mmsft train --resume {run_dir}` to finish it")
    kind = KINDS.get(cfg.kind)
    model, processor = load_model(cfg, kind, run_dir / "model")
    return Session(cfg, kind, None, model, processor)


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
    out = (Path(out_dir) if out_dir else Path(run_dir) / "predictions") if session.kind.writes_files else None
    return session.kind.predict(session.cfg, session.model, session.processor, inputs, out_dir=out)


def merge_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """A copy of a trained run with its LoRA adapters folded into the base weights (``merge_and_unload``):
    the backbone is saved as plain weights (adapter ``full``), and eval / predict work on the copy."""
    import yaml

    from .adapters import merge_adapters
    from .atomic import atomic_folder, write_text
    from .config import to_dict
    from .registry import ADAPTERS
    from .saving import save_model
    from .spec import AdapterSpec

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError("output folder exists and is not empty", where=str(out_dir), expected="a new folder")
    session = load_run(run_dir)
    merged = merge_adapters(session.model, session.cfg.adapters)
    if not merged:
        raise UserError("the run has no adapter that merges into the base weights", where=str(run_dir), expected="a run trained with lora / dora")
    cfg = session.cfg
    cfg.adapters = {"merged": AdapterSpec(method="full", options=ADAPTERS.get("full").parse_options({}))}
    with atomic_folder(out_dir) as tmp:
        write_text(tmp / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        for name in ("metrics.json", "params.json"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
        save_model(session, session.model, tmp / "model")
    return out_dir

