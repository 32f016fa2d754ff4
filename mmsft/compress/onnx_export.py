"""ONNX export of a classification run's composed model (token ids -> head logits) and the
onnxruntime side: sessions, parity against PyTorch, test-set scoring.

The exporter is torch.export-based (``dynamo=True``, the maintained one) with the TorchScript
exporter as a fallback; which one ran is recorded.  Quantized PyTorch modules do not export, so the
graph is the fp32 (possibly pruned) model.  Parity is checked on real batches before anything is
written: the largest logit difference and the share of equal argmax predictions.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class LogitsGraph(nn.Module):
    """The composed model as a function of plain tensors, for the exporter."""

    def __init__(self, model, head: str, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.head, self.keys = model, head, keys

    def forward(self, *inputs):
        batch = dict(zip(self.keys, inputs))
        return self.model(**batch, heads=[self.head])["heads"][self.head]["logits"]


def exportable_head(cfg, model) -> str:
    heads = list(cfg.model.heads)
    if model.backbone.family != "text" or len(heads) != 1 or model.heads[heads[0]].reads != "pooled":
        raise UserError("ONNX export covers text classification runs (one pooled head on a text encoder)", where="--export onnx",
                        expected="a text_classification run; generation decodes in a loop that is not exported")
    return heads[0]


def input_keys(batch: dict) -> tuple[str, ...]:
    return tuple(k for k in INPUTS if batch.get(k) is not None)


def export(model, cfg, sample: dict, path: Path) -> dict:
    """Write ``path`` (one self-contained .onnx file); returns {"exporter", "opset", "inputs"}."""
    head = exportable_head(cfg, model)
    keys = input_keys(sample)
    graph = LogitsGraph(model, head, keys).eval()
    args = tuple(sample[k] for k in keys)
    errors = []
    for dynamo in (True, False):
        try:
            with torch.no_grad():
                if dynamo:
                    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens")}
                    program = torch.onnx.export(graph, args, dynamo=True, input_names=list(keys), output_names=["logits"],
                                                dynamic_shapes=tuple(dims for _ in keys), opset_version=18, verbose=False)
                    program.save(str(path), external_data=False)
                else:
                    axes = {k: {0: "batch", 1: "tokens"} for k in keys}
                    torch.onnx.export(graph, args, str(path), dynamo=False, input_names=list(keys), output_names=["logits"],
                                      dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=18)
            return {"exporter": "torch.export (dynamo)" if dynamo else "torchscript", "opset": 18, "inputs": list(keys),
                    "fallback_reason": errors[0] if errors else None}
        except Exception as exc:  # noqa: BLE001 - try the other exporter, report both if both fail
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    raise UserError("ONNX export failed: " + " | ".join(errors), where="--export onnx")


def session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, batch: dict):
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: batch[n].cpu().numpy() for n in names})[0]


@torch.no_grad()
def parity(model, cfg, sess, batches: list[dict]) -> dict:
    head = exportable_head(cfg, model)
    worst, agree, total, scale = 0.0, 0, 0, 1.0
    for batch in batches:
        inputs = {k: batch[k] for k in input_keys(batch)}
        ref = model(**inputs, heads=[head])["heads"][head]["logits"].float().cpu()
        got = torch.from_numpy(run(sess, inputs)).float()
        worst = max(worst, float((ref - got).abs().max()))
        scale = max(scale, float(ref.abs().max()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        total += len(ref)
    return {"max_abs_diff": worst, "argmax_agreement": agree / max(total, 1), "samples": total, "logit_scale": scale,
            "ok": worst <= 1e-3 * scale}


def evaluate(sess, cfg, kind, prepared, split: str = "test") -> dict:
    """The kind's metrics for ``split`` computed from onnxruntime's logits."""
    from ..metrics import compute
    from ..training.batching import iterate_eval

    head = next(iter(cfg.model.heads))
    preds, refs = [], []
    for batch, _ in iterate_eval(prepared, split, cfg.train.eval_batch_size, "cpu"):
        logits = torch.from_numpy(run(sess, {k: batch[k] for k in input_keys(batch)}))
        preds += logits.argmax(-1).tolist()
        refs += batch["labels"].tolist()
    return compute(kind.head_metrics(cfg, head), predictions=preds, references=refs)


def size_mb(path: Path) -> float:
    return os.path.getsize(path) / 2**20
