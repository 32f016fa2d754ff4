"""Train / evaluate / predict for any task kind: the glue between config, kind, model, adapters and runner.

Every step asks the task kind or the composed model through their interfaces; nothing here
branches on the kind.

Crash and resource safety of a run folder (the guarantees ``benchmarks/faults.py`` and
``tests/test_faults.py`` check):

* one process per run folder: the main process holds ``atomic.FolderLock`` on it for the whole run
  (a second training into the same new ``--output``, or a second ``--resume`` of one run, exits 2);
* every file is written atomically and ``metrics.json`` last, so a run killed anywhere is either
  unfinished (``mmsft eval`` says so, ``--resume`` continues from the last checkpoint and redoes the
  final save) or finished (``--resume`` then only removes what the kill left behind);
* an unwritable output folder, a full disk or a read-only file system ends in one line and exit 2;
  a folder this run created is removed again when nothing of the run could be written into it;
* ``load_run`` reads no pickle: a run folder holding pickle files is refused before any is opened.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from safetensors import SafetensorError

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
    init_seed = cfg.train.seed if cfg.train.init_seed is None else cfg.train.init_seed
    set_seed(init_seed)
    with no_remote_code():
        model, processor = build_model(cfg, kind, data)
    set_seed(init_seed)  # adapter weights (LoRA A matrices) depend only on the init seed
    apply_adapters(model, cfg.adapters)
    if init_seed != cfg.train.seed:
        set_seed(cfg.train.seed)  # dropout and every later draw follow the run's own seed
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError(f"nothing would train: adapters {cfg.adapter_label} freeze the backbone and the heads have no weights",
                        where="adapters", expected="an adapter that trains part of the backbone (lora, full, frozen_top2), or a module")
    if cfg.train.gradient_checkpointing:  # only acts in training mode; evaluation and prediction run as before
        from .training.checkpointing import enable_gradient_checkpointing

        enable_gradient_checkpointing(model)
    prepared = kind.prepare(cfg, processor, data)
    return Session(cfg, kind, data, model, processor, prepared)


@contextlib.contextmanager
def no_remote_code() -> Iterator[None]:
    """Model files never run code: a backbone folder whose ``config.json`` maps its classes to Python files
    (``auto_map``) stops with one line instead of loading.

    mmsft never passes ``trust_remote_code``, so transformers refuses such code, except that on a terminal it
    first *asks* (for 15 s); a run must not hinge on a keystroke, so the question is switched off here
    (its timeout set to 0, as transformers' own CI does) and the refusal becomes a ``UserError``."""
    try:
        from transformers import dynamic_module_utils
    except ImportError:  # pragma: no cover - no transformers, no remote code
        yield
        return
    saved = dynamic_module_utils.TIME_OUT_REMOTE_CODE
    dynamic_module_utils.TIME_OUT_REMOTE_CODE = 0
    try:
        yield
    except ValueError as exc:
        if "trust_remote_code" not in str(exc) and "custom code" not in str(exc):
            raise
        raise UserError("the backbone ships its own Python code (auto_map in config.json), and mmsft never runs code from model files",
                        where="model.backbone", expected="a model folder of an architecture transformers knows (model_type)") from None
    finally:
        dynamic_module_utils.TIME_OUT_REMOTE_CODE = saved


def new_run_dir(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return paths.runs_dir() / f"{cfg.name}-{cfg.adapter_label}-{stamp}"


def _has_content(folder: Path) -> bool:
    """``folder`` exists and holds something besides a lock file (a crashed run leaves the lock file)."""
    from .atomic import LOCK_NAME

    if folder.is_file() or folder.is_symlink():
        return True
    return folder.is_dir() and any(p.name != LOCK_NAME for p in folder.iterdir())


def _check_writable(run_dir: Path) -> None:
    """Fail before any work when the run folder cannot be created or written (nothing is created here)."""
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot create the run folder: {probe} is a file, not a folder", where=str(run_dir),
                        expected="an --output path inside a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into {probe} (permission denied or read-only file system)", where=str(run_dir),
                        expected="an --output path inside a writable folder")


def _lock(run_dir: Path):
    from .atomic import FolderLock, FolderLocked

    try:
        return FolderLock(run_dir).acquire()
    except FolderLocked as exc:
        raise UserError(f"the run folder is in use by another mmsft process{f' (pid {exc.holder})' if exc.holder else ''}",
                        where=str(run_dir), expected="one process per run folder: wait for it to end, or choose another --output") from None


@contextlib.contextmanager
def _resource_errors(run_dir: Path, created: bool) -> Iterator[None]:
    """Disk full, permission denied, read-only file system ... -> one ``UserError`` naming the file.

    The atomic writers have already removed their temporary files; a run folder that this run created
    and that holds no ``config.yaml`` yet (nothing of the run) is removed too.
    """
    from .atomic import RESOURCE_ERRNOS, remove_tree

    try:
        yield
    except OSError as exc:
        if exc.errno not in RESOURCE_ERRNOS:
            raise
        started = (run_dir / "config.yaml").is_file()
        if created and not started:
            with contextlib.suppress(OSError):
                remove_tree(run_dir)
        then = (f"the last complete checkpoint is kept: `mmsft train --resume {run_dir}` continues once it is fixed"
                if started else "nothing was written")
        raise UserError(f"{exc.strerror or exc}; {then}", where=str(exc.filename or run_dir),
                        expected="a readable data root, and a writable run folder with free space") from None


def _finish_leftovers(run_dir: Path) -> None:
    """What a kill after ``metrics.json`` left: the checkpoints and temporary files (caller holds the lock)."""
    from .atomic import remove_temps, remove_tree

    remove_tree(run_dir / "checkpoints")
    remove_temps(run_dir)


def train(cfg: RunConfig, run_dir: Optional[Path] = None, resume: bool = False, callbacks=()) -> Path:
    """Fine-tune, evaluate on test, save the model and write the report; returns the run folder.

    ``resume``: continue ``run_dir`` from its last verified checkpoint (a finished run is left as it is,
    minus the leftovers of a kill after it finished)."""
    from .training.runner import make_accelerator

    accelerator = make_accelerator(cfg.train)
    run_dir = Path(run_dir or _same_on_every_rank(new_run_dir(cfg)))
    locks = []  # the run folder's lock, once taken (here for a resume, in _train for a new run)
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise UserError("not a run folder (no config.yaml)", where=str(run_dir))
        _check_writable(run_dir)
        if accelerator.is_main_process:
            locks.append(_lock(run_dir))
    elif _has_content(run_dir):  # every rank checks before anything is written
        raise UserError("run folder exists and is not empty (pass --resume to continue it)", where=str(run_dir))
    else:
        _check_writable(run_dir)
    created = not run_dir.exists()
    try:
        with _resource_errors(run_dir, created):
            if resume and (run_dir / "metrics.json").is_file():
                if accelerator.is_main_process:
                    _finish_leftovers(run_dir)
                    print(f"mmsft: {run_dir} finished training already; nothing to resume", file=sys.stderr)
                accelerator.wait_for_everyone()
                return run_dir
            if locks:
                from .atomic import remove_temps

                remove_temps(run_dir)  # a killed final save's temporary model folder, report files, ...
            _train(cfg, run_dir, resume, callbacks, accelerator, locks)
    finally:
        for lock in locks:
            lock.release()
    return run_dir


def _train(cfg: RunConfig, run_dir: Path, resume: bool, callbacks, accelerator, locks: list) -> None:
    """The body of ``train``; a new run's main process takes the run folder's lock here (into ``locks``),
    once the config and data have passed their checks (bad input leaves no folder)."""
    from .atomic import remove_tree, write_json, write_text
    from .faults import point as fault_point
    from .reporting.report import write_report
    from .saving import save_model
    from .training.batching import cache_features
    from .training.memory import current_memory_mb, reset_peak_memory
    from .training.objectives import build_objective
    from .training.runner import Runner
    from .training.sampling import sampler_groups

    # rank 0 builds (and writes the Arrow/token caches) first; the others wait at its barrier, so every rank has
    # checked the run folder above before rank 0 writes into it
    with accelerator.main_process_first():
        session = build_session(cfg)
    groups = sampler_groups(cfg.train, session.prepared)  # balanced sampler: fails before any output
    objective = build_objective(cfg.objective)
    objective.bind(session.prepared)  # before any output: its checks (tasks it names) come first; cached features keep groups and extra
    counts = session.model.param_counts()
    if accelerator.is_main_process:  # multi-process: one writer, the others wait for the folder
        import yaml

        from .config import to_dict

        run_dir.mkdir(parents=True, exist_ok=True)
        if not locks:
            locks.append(_lock(run_dir))
            if _has_content(run_dir):  # another run got here first (and has ended): the early check was too early
                raise UserError("run folder exists and is not empty (pass --resume to continue it)", where=str(run_dir))
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "params.json", counts)
        print(f"[mmsft] {cfg.name} / {cfg.adapter_label}: trainable {counts['trainable_params']:,} of "
              f"{counts['total_params']:,} parameters ({counts['trainable_percent']}%)")
    accelerator.wait_for_everyone()
    session.model.to(accelerator.device)
    reset_peak_memory(accelerator.device)  # the run's own peak: what the process held before (a notebook, a test session) is not it
    memory_at_start = current_memory_mb(accelerator.device)  # model and data loaded: peak minus this is training's memory
    prepared = session.prepared
    cached = cfg.train.cache_features and prepared.deterministic_train and session.model.feature_cache_ok()
    encode_seconds = 0.0
    if cached:
        tick = time.perf_counter()
        with accelerator.autocast():  # the precision the uncached steps would run the backbone in: same features
            prepared = cache_features(session.model, prepared, cfg.train.eval_batch_size, accelerator.device)
        encode_seconds = time.perf_counter() - tick

    def evaluate(model):
        return session.kind.evaluate(cfg, model, prepared, "validation", session.processor).metrics

    runner = Runner(cfg.train, session.model, prepared.splits["train"], prepared.collate, prepared.lengths["train"],
                    evaluate, run_dir, accelerator=accelerator, callbacks=callbacks, groups=groups, objective=objective)
    result = runner.fit(resume=resume)
    fault_point("final", run_dir)
    # accelerate's mixed-precision autocast wrapper comes off: the test split, and whoever holds this model
    # object afterwards, see what `mmsft eval` / `predict` of the saved run see (validation ran under it)
    model = accelerator.unwrap_model(runner.model, keep_fp32_wrapper=False)
    test = session.kind.evaluate(cfg, model, prepared, "test", session.processor)
    summary = {
        "task": cfg.name, "adapter": cfg.adapter_label, "backbone": cfg.model.backbone,
        "test": _plain(test.metrics), "best_validation": result.state.best_metric, "best_step": result.state.best_step,
        "steps": result.state.step, "epochs_completed": result.state.epoch, "stopped_early": result.state.stopped_early,
        "train_seconds": round(result.state.train_seconds + encode_seconds, 2), "feature_cache_seconds": round(encode_seconds, 2),
        "samples_per_second": round(result.samples_per_second, 2), "peak_memory_mb": round(result.peak_memory_mb, 1),
        "training_memory_mb": None if memory_at_start is None else round(result.peak_memory_mb - memory_at_start, 1),
        "features_cached": cached, "device": str(accelerator.device), "cpu_allocator_tuned": runner.allocator_tuned,
        "mixed_precision": accelerator.mixed_precision,
        "skipped_steps": result.state.skipped_steps, "overflow_steps": result.state.overflow_steps,
        "data": session.kind.data_summary(session.data), **counts,
    }
    if accelerator.is_main_process:
        save_model(session, model, run_dir / "model")
        write_report(session, run_dir, summary, test)
        write_json(run_dir / "metrics.json", summary, default=str)  # last: its presence marks a finished run
        remove_tree(run_dir / "checkpoints")  # only a crashed run needs them
    accelerator.wait_for_everyone()


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
    _refuse_pickles(run_dir / "model")
    kind = KINDS.get(cfg.kind)
    try:
        with no_remote_code():
            model, processor = load_model(cfg, kind, run_dir / "model")
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a damaged or foreign model folder
        if isinstance(exc, RuntimeError) and not isinstance(exc, SafetensorError) and "loading state_dict" not in str(exc):
            raise
        raise UserError(f"the saved model cannot be loaded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        where=str(run_dir / "model"), expected="a model/ folder as `mmsft train` wrote it") from None
    return Session(cfg, kind, None, model, processor)


# what torch.load / pickle would read; mmsft writes safetensors and JSON only, so any of these is foreign
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def _refuse_pickles(model_dir: Path) -> None:
    """Refuse a run whose ``model/`` holds pickle files, before any is opened.

    Why refuse rather than ignore: the loaders underneath (``from_pretrained``, peft) fall back to a
    ``pytorch_model.bin`` / ``adapter_model.bin`` when the safetensors file is absent; whatever their
    ``weights_only`` default is today, a run folder from someone else must not depend on it."""
    if not model_dir.is_dir():
        return
    found = sorted(p for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    if found:
        raise UserError(f"the saved model holds {len(found)} pickle file(s) ({found[0].relative_to(model_dir)}"
                        f"{', ...' if len(found) > 1 else ''}), which could run code when loaded; mmsft never reads pickle",
                        where=str(model_dir), expected="only safetensors and JSON files, as `mmsft train` writes them")


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

