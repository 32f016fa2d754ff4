"""``mmsft compress RUN``: prune, re-fine-tune briefly, export, quantize, and write a run folder.

Order: LoRA folded into the base weights; pruning steps in the order given (layer dropping, head
pruning by importance, magnitude pruning); an optional short re-fine-tune (``refit_steps``) of the
pruned fp32 model; ONNX export of that fp32 model (parity checked); int8 quantization last (nothing
trains after it).  Every step is recorded in ``compress.json`` with the validation metric after it.
"""
from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import UserError

PRUNE_DEFAULTS = {"heads": 0.3, "layers": 1.0, "magnitude": 0.5}


@dataclass
class PruneStep:
    method: str  # heads (share of heads removed) | layers (top blocks dropped) | magnitude (weight sparsity)
    amount: float

    @property
    def label(self) -> str:
        return f"{self.method}_{int(self.amount) if self.method == 'layers' else round(100 * self.amount)}"


def parse_prune(text: str) -> PruneStep:
    method, _, value = text.partition(":")
    if method not in PRUNE_DEFAULTS:
        from ..errors import suggest

        raise UserError(f"unknown pruning '{method}'.{suggest(method, PRUNE_DEFAULTS)}", where="--prune",
                        expected="heads[:share], layers[:count] or magnitude[:sparsity]")
    try:
        amount = float(value) if value else PRUNE_DEFAULTS[method]
    except ValueError:
        raise UserError(f"'{value}' is not a number", where=f"--prune {text}") from None
    if method == "layers" and (amount < 1 or amount != int(amount)):
        raise UserError(f"layers takes a whole number of top blocks to drop, got {value}", where=f"--prune {text}", expected="e.g. layers:2")
    if method != "layers" and not 0 < amount < 1:
        raise UserError(f"{method} takes a share in (0, 1), got {value}", where=f"--prune {text}", expected=f"e.g. {method}:0.3")
    return PruneStep(method, amount)


def sample_batches(prepared, split: str, n: int, batch_size: int, seed: int = 0) -> list[dict]:
    """``n`` seeded random batches of ``split`` (importance estimation, calibration, probing)."""
    dataset = prepared.splits[split]
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)][:max(1, n)]
    return [prepared.collate([dataset[i] for i in chunk]) for chunk in chunks]


def _without_labels(batch: dict, model) -> dict:
    targets = {h.target for h in model.heads.values()}
    return {k: v for k, v in batch.items() if k not in targets}


class Compressor:
    """One compression of one loaded run (``pipeline.load_run``), step by step."""

    def __init__(self, session, prepared, importance_batches: int = 16, calibration_batches: int = 16):
        from ..adapters import merge_adapters
        from ..registry import ADAPTERS

        self.session, self.prepared = session, prepared
        self.cfg, self.model = session.cfg, session.model
        self.importance_batches, self.calibration_batches = importance_batches, calibration_batches
        previous = [s for s in self.cfg.adapters.values() if s.method == "compressed"]
        self.options = dataclasses.replace(previous[0].options) if previous else ADAPTERS.get("compressed").parse_options({})
        if self.options.quantize:
            raise UserError("this run is already quantized; compress its unquantized source instead", where="RUN")
        merge_adapters(self.model, self.cfg.adapters)  # LoRA / DoRA folded: the backbone is plain weights now
        self.backbone = self.model.backbone
        self.record: dict = {"steps": []}

    # -- pruning --------------------------------------------------------------------------------
    def validation(self) -> dict:
        from ..derived import plain_metrics

        metric = self.cfg.train.early_stopping.metric
        metrics = plain_metrics(self.session.kind.evaluate(self.cfg, self.model, self.prepared, "validation", self.session.processor).metrics)
        return {"metric": metric, "value": metrics.get(metric)}

    def prune(self, step: PruneStep) -> dict:
        from .structure import head_counts, head_importance, heads_to_keep, keep_blocks, magnitude_prune, prune_heads

        hooked = any(m.points() or m.reads_layers() for m in self.model.inserts.values())
        if hooked and step.method in ("layers", "heads"):
            raise UserError("this run has modules hooked onto the backbone's blocks; structured pruning would move them",
                            where="--prune", expected="magnitude pruning or quantization only")
        info: dict = {"step": step.label}
        if step.method == "layers":
            n = len(self.backbone.blocks())
            if step.amount >= n:
                raise UserError(f"cannot drop {int(step.amount)} of {n} blocks", where="--prune layers", expected=f"at most {n - 1}")
            keep = n - int(step.amount)
            keep_blocks(self.backbone, keep)
            self.options.blocks = keep
            self.options.heads = {k: v for k, v in self.options.heads.items() if int(k) < keep}
            info.update(blocks_before=n, blocks_after=keep)
        elif step.method == "heads":
            before = head_counts(self.backbone)
            batches = sample_batches(self.prepared, "train", self.importance_batches, self.cfg.train.batch_size, self.cfg.train.seed)
            self.model.eval()
            importance = head_importance(self.model, self.backbone, batches, lambda b: self.model(**b)["loss"])
            keep = heads_to_keep(importance, step.amount)
            prune_heads(self.backbone, keep)
            for block, kept in keep.items():  # record indices of the original heads (apply replays on a fresh backbone)
                original = self.options.heads.get(str(block), list(range(before[block])))
                self.options.heads[str(block)] = [original[h] for h in kept]
            after = head_counts(self.backbone)
            info.update(heads_before=sum(before), heads_after=sum(after), heads_per_block=after,
                        importance=[[round(float(v), 4) for v in s] for s in importance], importance_batches=len(batches))
        else:
            self.options.sparsity = magnitude_prune(self.backbone, step.amount)
            info.update(sparsity=round(self.options.sparsity, 4))
        info["validation"] = self.validation()
        self.record["steps"].append(info)
        return info

    def refit(self, steps: int) -> dict:
        """A short fine-tune of the pruned model on its task's train split (all weights train)."""
        from ..training.runner import Runner

        cfg = self.cfg
        spec = dataclasses.replace(cfg.train, max_steps=steps, eval_every_steps=0, save_every_steps=0, callbacks=[],
                                   early_stopping=dataclasses.replace(cfg.train.early_stopping, patience=0))
        for p in self.model.parameters():
            p.requires_grad_(True)
        tick = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mmsft-refit-") as tmp:
            runner = Runner(spec, self.model, self.prepared.splits["train"], self.prepared.collate, self.prepared.lengths["train"],
                            lambda m: self.session.kind.evaluate(cfg, m, self.prepared, "validation", self.session.processor).metrics, Path(tmp))
            runner.fit()
            self.model = runner.accelerator.unwrap_model(runner.model).cpu()
        self.model.eval()
        info = {"step": f"refit_{steps}", "seconds": round(time.perf_counter() - tick, 1), "validation": self.validation()}
        self.record["steps"].append(info)
        return info

    # -- export and quantization --------------------------------------------------------------------
    def export_onnx(self, path: Path) -> dict:
        from . import onnx_export

        self.model.eval()
        batches = sample_batches(self.prepared, "validation", 4, 16, 0)
        info = onnx_export.export(self.model, self.cfg, _without_labels(batches[0], self.model), path)
        info["parity"] = onnx_export.parity(self.model, self.cfg, onnx_export.session(path), batches)
        if not info["parity"]["ok"]:
            raise UserError(f"onnxruntime's logits differ from PyTorch's by {info['parity']['max_abs_diff']:.2e}", where="--export onnx")
        info["size_mb"] = round(onnx_export.size_mb(path), 3)
        self.record["onnx"] = info
        return info

    def quantize(self, mode: str, backend: str = "auto") -> dict:
        from .quantize import calibrate, probe, quantize_blocks

        self.model.eval()
        scales = None
        if mode == "int8_static":
            batches = sample_batches(self.prepared, "train", self.calibration_batches, self.cfg.train.batch_size, self.cfg.train.seed)
            scales = calibrate(self.backbone, lambda: [self.model(**_without_labels(b, self.model)) for b in batches])
        if backend == "auto":
            sample = _without_labels(sample_batches(self.prepared, "validation", 1, 32, 0)[0], self.model)
            choice = probe(self.model, lambda m: m.backbone, lambda m: m(**sample), mode, scales)
        else:
            choice = {"backend": backend, "timings_ms": {}, "reason": "chosen with --backend"}
        layers = quantize_blocks(self.backbone, mode, choice["backend"], scales)
        self.options.quantize, self.options.backend = mode, choice["backend"]
        info = {"step": mode, **choice, "layers": layers, "calibration_batches": len(batches) if scales else 0,
                "validation": self.validation()}
        self.record["quantize"] = info
        self.record["steps"].append(info)
        return info


def compress_run(run_dir, out_dir, prune: list[str] = (), quantize: Optional[str] = None, export: Optional[str] = None,
                 backend: str = "auto", refit_steps: int = 0, importance_batches: int = 16, calibration_batches: int = 16,
                 threads: int = 0) -> Path:
    """Compress a trained (or merged) run into a new run folder; returns its path."""
    from ..atomic import atomic_folder
    from ..derived import check_new_folder, fill_run, scored_summary
    from ..pipeline import load_run
    from ..spec import AdapterSpec

    out_dir = Path(out_dir)
    check_new_folder(out_dir)
    steps = [parse_prune(p) for p in prune]
    if not steps and not quantize and not export:
        raise UserError("nothing to do", where="mmsft compress", expected="--prune, --quantize and/or --export")
    if export and export != "onnx":
        raise UserError(f"unknown export format '{export}'", where="--export", expected="onnx")
    if threads:
        torch.set_num_threads(threads)
    tick = time.perf_counter()
    session = load_run(run_dir)
    if export:
        from .onnx_export import exportable_head

        exportable_head(session.cfg, session.model)  # fail before any work
    session.data = session.kind.load_data(session.cfg)
    prepared = session.kind.prepare(session.cfg, session.processor, session.data)
    work = Compressor(session, prepared, importance_batches, calibration_batches)
    work.record.update(source=str(run_dir), prune=[s.label for s in steps], quantize=quantize, export=export,
                       validation_before=work.validation())
    for step in steps:
        work.prune(step)
    if refit_steps:
        work.refit(refit_steps)
    with tempfile.TemporaryDirectory(prefix="mmsft-onnx-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        if export:
            work.export_onnx(onnx_path)
        if quantize:
            work.quantize(quantize, backend)
        session.cfg.adapters = {"compressed": AdapterSpec(method="compressed", options=work.options)}
        work.record["seconds"] = round(time.perf_counter() - tick, 1)
        summary = scored_summary(session, work.model, prepared, "mmsft compress",
                                 {"source": str(run_dir), "compress": {k: work.record[k] for k in ("prune", "quantize", "export")}})
        with atomic_folder(out_dir) as folder:
            fill_run(folder, session, work.model, summary, {"compress.json": work.record})
            if export:
                shutil.copyfile(onnx_path, folder / "model" / "model.onnx")  # inside the folder being built: atomic with it
    return out_dir
