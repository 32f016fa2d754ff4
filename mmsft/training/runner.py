"""The one runner: trains any model through an objective (``loss(model, batch)``).

It knows nothing task-specific: the kind hands it a dataset, a collate function, per-sample
lengths (for length-grouped batches) and an ``evaluate(model) -> metrics`` callable; the objective
turns a batch into a loss; callbacks see every step, evaluation and save.

Numerical faults: a NaN / inf loss (checked before its backward pass, so no gradient is poisoned) or
gradient norm (checked before the update) either stops the run with the step number, raising
``NonFiniteError`` (a ``UserError``: exit 2) while the last good checkpoint stays as it was
(``train.nonfinite: stop``, the default), or drops that optimizer step: gradients cleared, no update,
no scheduler step, counted in ``TrainState.skipped_steps`` and logged (``skip``).  Under fp16 an
overflowing gradient is the grad scaler's business (accelerate's ``GradScaler``: the step is skipped
and the scale lowered, counted in ``overflow_steps``, the scheduler held back as the Hugging Face
Trainer does) and the scaler's state is saved with every checkpoint, so resume stays exact.

Resume trims ``metrics.jsonl`` back to the checkpoint's step (records of the steps that are trained
again, and a line cut short by the crash, would otherwise be there twice / torn).
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import atomic
from ..errors import UserError
from ..faults import point as fault_point
from ..faults import watch_forwards
from ..metrics import key_direction
from ..models.attention import use_cpu_training_attention
from ..models.dropout import use_cpu_dropout
from .batching import to_device
from .callbacks import Callback, build_callbacks
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, load_extra_tensors, save_checkpoint
from .cpu_memory import cap_kernel_caches, configure_allocator
from .memory import peak_memory_mb
from .precision import resolve_precision
from .objectives import Objective, Single
from .optim import build_optimizer
from .sampling import ResumableBatchSampler
from .schedules import build_scheduler


SCALER_FILE = "grad_scaler.safetensors"  # extra checkpoint file: the fp16 grad scaler's scale and growth tracker


class NonFiniteError(UserError):
    """A NaN / inf loss or gradient under ``train.nonfinite: stop``."""


@dataclass
class TrainResult:
    state: TrainState
    samples_per_second: float
    peak_memory_mb: float


def make_accelerator(spec):
    """The run's Accelerator; the CPU kernel caches are capped first: the variables count only before the first
    bf16 kernel, and resolving ``mixed_precision: auto`` times bf16 matmuls (``mmsft train`` makes the accelerator
    before the Runner; capping in the Runner left whole runs at 1,024 kernels per cache)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    cap_kernel_caches(spec.cpu_allocator)

    use_cpu = spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available())
    device = torch.device("cpu") if use_cpu else torch.device("cuda" if torch.cuda.is_available() else "mps")
    # backbones carry parts a task may not use (BERT's pooler under mean pooling): let DDP skip them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=use_cpu, mixed_precision=resolve_precision(spec.mixed_precision, device), kwargs_handlers=[ddp])


class Runner:
    """Epoch loop with gradient accumulation and clipping, evaluation, early stopping,
    checkpoints with exact resume, a JSONL metrics log and a progress bar."""

    def __init__(self, spec, model, train_dataset, collate: Callable, lengths: Sequence[int],
                 evaluate: Callable, run_dir: Path, accelerator=None, callbacks: Sequence[Callback] = (),
                 groups: Optional[Sequence[int]] = None, objective: Optional[Objective] = None):
        self.spec, self.model, self.dataset, self.collate = spec, model, train_dataset, collate
        self.evaluate, self.run_dir = evaluate, Path(run_dir)
        self.objective = objective or Single()
        self.callbacks = [*build_callbacks(spec.callbacks, report_to=spec.report_to), *self.objective.callbacks(), *callbacks]
        self.accelerator = accelerator or make_accelerator(spec)
        self.allocator_tuned = self.accelerator.device.type == "cpu" and configure_allocator(spec.cpu_allocator)
        if self.accelerator.device.type == "cpu" and spec.cpu_dropout == "fast":
            use_cpu_dropout(model)  # same maths, a mask several times cheaper (mmsft.models.dropout)
            use_cpu_training_attention(model)  # attention dropout with that mask (mmsft.models.attention)
        replicas, rank = self.accelerator.num_processes, self.accelerator.process_index
        self.sampler = self.objective.batch_sampler(spec, lengths, replicas, rank)
        if self.sampler is None:
            self.sampler = ResumableBatchSampler(lengths, spec.batch_size, spec.seed, spec.group_by_length,
                                                 num_replicas=replicas, rank=rank, groups=groups)
        self.batches_per_epoch = len(self.sampler)
        steps_per_epoch = math.ceil(self.batches_per_epoch / spec.grad_accum)
        self.total_steps = spec.max_steps or max(1, math.ceil(spec.epochs * steps_per_epoch))
        self.optimizer = build_optimizer(model, spec.lr, spec.weight_decay, spec.head_lr, spec.layer_decay,
                                         fused=getattr(self.accelerator, "scaler", None) is None)
        self.scheduler = build_scheduler(self.optimizer, spec.schedule, self.total_steps, spec.warmup_ratio)
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer)
        self.log_path = self.run_dir / "metrics.jsonl"
        self.last_checkpoint: Optional[Path] = None

    # -- logging -------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _trim_log(self, step: int) -> None:
        """Keep the log records up to ``step`` (the checkpoint resumed from); drop torn lines."""
        if not self.accelerator.is_main_process or not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # cut short by the crash
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line + "\n")
        atomic.write_text(self.log_path, "".join(kept))

    # -- evaluation and early stopping ---------------------------------------------------------
    def _evaluate(self, state: TrainState) -> bool:
        """Run validation, update best/patience; True when training should stop."""
        es = self.spec.early_stopping
        self._emit("before_evaluate", state)
        with watch_forwards("eval"):
            metrics = self.evaluate(self.accelerator.unwrap_model(self.model))
        self.model.train()
        record = {"type": "eval", "step": state.step, "epoch": round(state.epoch + state.batch_in_epoch / max(1, self.batches_per_epoch), 3), **metrics}
        state.history.append(record)
        self._log(record)
        value = metrics.get(es.metric) if es.metric is not None else None
        if value is None:
            if metrics and es.metric is not None:  # the config check makes this unreachable for shipped kinds
                raise RuntimeError(f"early_stopping.metric '{es.metric}' is not among the validation metrics {sorted(metrics)}")
            self._emit("on_evaluate", state, metrics)
            return False  # an evaluate hook that reports nothing: no early stopping, no best weights
        maximise = es.mode == "max" or (es.mode == "auto" and key_direction(es.metric) is not False)
        better = state.best_metric is None or (value > state.best_metric + es.min_delta if maximise else value < state.best_metric - es.min_delta)
        if better:
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            if es.restore_best:
                self._best = copy.deepcopy({k: v.detach().cpu() for k, v in self.accelerator.unwrap_model(self.model).trainable_state_dict().items()})
        else:
            state.bad_evals += 1
        self._emit("on_evaluate", state, metrics)
        return es.patience > 0 and state.bad_evals >= es.patience

    def _emit(self, event: str, state: TrainState, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, state, *args)

    def _checkpoint(self, state: TrainState) -> None:
        """Model, optimizer, scheduler, RNG and data position, plus the best weights so far and every
        callback's state, in one verified checkpoint (resume never pairs a state with newer extras)."""
        if self.accelerator.is_main_process:
            extras = {self._callback_file(c): c.state_dict() for c in self.callbacks if c.state_dict()}
            if getattr(self, "_best", None) is not None:
                extras["best.safetensors"] = self._best
            scaler = self._scaler_state()
            if scaler:
                extras[SCALER_FILE] = scaler
            path = save_checkpoint(self.run_dir / "checkpoints", self.accelerator.unwrap_model(self.model), self.optimizer,
                                   self.scheduler, state, self.spec.keep_checkpoints, extra_tensors=extras)
            self.last_checkpoint = path
            self._emit("on_save", state, path)

    # -- numerical faults ----------------------------------------------------------------------
    def _scaler_state(self) -> dict:
        scaler = self.accelerator.scaler
        if scaler is None or not scaler.is_enabled():
            return {}
        return {"scale": torch.tensor([scaler.get_scale()], dtype=torch.float64),
                "growth_tracker": torch.tensor([scaler._get_growth_tracker()], dtype=torch.int64)}

    def _load_scaler_state(self, saved: Optional[dict]) -> None:
        scaler = self.accelerator.scaler
        if saved and scaler is not None and scaler.is_enabled():
            scaler.load_state_dict({**scaler.state_dict(), "scale": float(saved["scale"][0]),
                                    "_growth_tracker": int(saved["growth_tracker"][0])})

    def _all_finite(self, value: float) -> bool:
        """``value`` is finite on every process (they must agree, or DDP's next all-reduce would hang)."""
        finite = math.isfinite(value)
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([0.0 if finite else 1.0], device=self.accelerator.device)
            finite = float(self.accelerator.reduce(flag, "sum")) == 0
        return finite

    def _clip_and_check(self) -> Optional[str]:
        """Clip the gradients (``max_grad_norm``); a reason when their norm is not finite.  Under a grad
        scaler (fp16) inf gradients are an overflow that the scaler handles, so they pass."""
        acc, spec = self.accelerator, self.spec
        if spec.max_grad_norm:
            norm = acc.clip_grad_norm_(self.model.parameters(), spec.max_grad_norm)
        elif acc.scaler is None:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        else:
            return None
        if acc.scaler is not None or norm is None:
            return None
        value = float(norm)
        return None if math.isfinite(value) else f"gradient norm is {value}"

    def _nonfinite(self, state: TrainState, reason: str, batch: int) -> None:
        """Stop (raise) or record a skipped optimizer step, by ``train.nonfinite``; ``batch``: 1-based in the epoch."""
        step = state.step + 1
        where = f"step {step} (epoch {state.epoch}, batch {batch} of {self.batches_per_epoch})"
        if self.spec.nonfinite == "stop":
            kept = (f"the last good checkpoint {self.last_checkpoint} is kept" if self.last_checkpoint
                    else "no checkpoint had been saved yet")
            raise NonFiniteError(f"{reason} at {where}: training stopped (train.nonfinite=stop); {kept}",
                                 where=str(self.run_dir),
                                 expected="finite losses: lower train.lr, check the data, or train.nonfinite=skip to skip such steps")
        state.skipped_steps += 1
        self._log({"type": "skip", "step": step, "reason": reason})
        if self.accelerator.is_main_process:
            tqdm.write(f"mmsft: warning: skipped {where}: {reason} (train.nonfinite=skip)", file=sys.stderr)

    def _callback_file(self, callback: Callback) -> str:
        return f"callback-{self.callbacks.index(callback)}-{type(callback).__name__}.safetensors"

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        spec, acc, model = self.spec, self.accelerator, self.model
        state, self._best = TrainState(), None
        ckpt = latest_checkpoint(self.run_dir / "checkpoints") if resume else None
        if ckpt is not None:
            state = load_checkpoint(ckpt, acc.unwrap_model(model), self.optimizer, self.scheduler)
            self._best = load_extra_tensors(ckpt, "best.safetensors")
            self._load_scaler_state(load_extra_tensors(ckpt, SCALER_FILE))
            for callback in self.callbacks:
                saved = load_extra_tensors(ckpt, self._callback_file(callback))
                if saved is not None:
                    callback.load_state_dict(saved)
            self.last_checkpoint = ckpt
        if resume:
            self._trim_log(state.step)
        self._emit("on_train_begin", state)
        # own generator: creating an iterator must not draw from the global RNG (exact resume)
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=self.collate, generator=torch.Generator())
        model.train()
        bar = tqdm(total=self.total_steps, initial=state.step, desc="train", unit="step", mininterval=1 if sys.stderr.isatty() else 30)
        window_loss, window_n, stop, bad = 0.0, 0, state.stopped_early, None
        try:
            while state.step < self.total_steps and not stop:
                self.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch)
                tick = time.perf_counter()
                for batch in loader:
                    batch = to_device(batch, acc.device)
                    with acc.autocast():
                        loss, _ = self.objective.loss(model, batch)
                        loss = loss / spec.grad_accum
                    fault_point("step", "forward")
                    value = loss.item() * spec.grad_accum
                    if self._all_finite(value):  # before backward: a NaN loss never reaches the gradients
                        acc.backward(loss)
                        window_loss, window_n = window_loss + value, window_n + 1
                    else:
                        bad = bad or f"loss is {value}"
                        if spec.nonfinite == "stop":
                            self._nonfinite(state, bad, state.batch_in_epoch + 1)
                    fault_point("step", "backward")
                    state.batch_in_epoch += 1
                    state.samples_seen += len(next(v for v in batch.values() if torch.is_tensor(v)))
                    last_in_epoch = state.batch_in_epoch == self.batches_per_epoch
                    if state.batch_in_epoch % spec.grad_accum and not last_in_epoch:
                        continue
                    bad = bad or self._clip_and_check()
                    if bad is None:
                        self.optimizer.step()
                        fault_point("step", "update")
                        if getattr(self.optimizer, "step_was_skipped", False):  # fp16: the scaler found inf gradients
                            state.overflow_steps += 1
                            self._log({"type": "overflow", "step": state.step + 1, "scale": acc.scaler.get_scale()})
                        else:
                            self.scheduler.step()
                    else:
                        self._nonfinite(state, bad, state.batch_in_epoch)
                    self.optimizer.zero_grad(set_to_none=True)
                    bad = None
                    state.step += 1
                    bar.update(1)
                    self._emit("on_step_end", state)  # before evaluation and checkpoint: both see this step's callback state
                    if (state.step % spec.log_every_steps == 0 or state.step == self.total_steps) and window_n:
                        bar.set_postfix(loss=f"{window_loss / window_n:.4f}")
                        self._log({"type": "train", "step": state.step, "epoch": state.epoch, "loss": window_loss / window_n, "lr": self.scheduler.get_last_lr()[0]})
                        window_loss, window_n = 0.0, 0
                    done = state.step >= self.total_steps
                    if (spec.eval_every_steps and state.step % spec.eval_every_steps == 0) or (last_in_epoch and not spec.eval_every_steps) or done:
                        state.train_seconds += time.perf_counter() - tick
                        stop = self._evaluate(state)
                        tick = time.perf_counter()
                    if last_in_epoch:
                        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    if stop or done:
                        break
                    if (spec.save_every_steps and state.step % spec.save_every_steps == 0) or last_in_epoch:
                        state.train_seconds += time.perf_counter() - tick
                        self._checkpoint(state)
                        tick = time.perf_counter()
                state.train_seconds += time.perf_counter() - tick
        finally:
            bar.close()
        state.stopped_early = stop
        self._emit("on_train_end", state)
        if self._best is not None and spec.early_stopping.restore_best:
            acc.unwrap_model(model).load_state_dict(self._best, strict=False)
        sps = state.samples_seen / max(state.train_seconds, 1e-9)
        return TrainResult(state, sps, peak_memory_mb(acc.device))
