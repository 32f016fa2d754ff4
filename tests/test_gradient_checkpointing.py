"""train.gradient_checkpointing: the same gradients with fewer saved activations; refused where nothing supports it."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmsft.errors import UserError
from mmsft.pipeline import build_session, train
from mmsft.spec import build_run_config
from mmsft.training.checkpointing import enable_gradient_checkpointing


def _grads_and_saved(session, batch) -> tuple[dict, int]:
    """Gradients of one training step from a fixed seed, and the bytes autograd kept for backward."""
    model = session.model.train()
    model.zero_grad(set_to_none=True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch)["loss"]
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, sum(saved)


def test_same_gradients_with_fewer_saved_activations(toy_task):
    session = build_session(build_run_config(str(toy_task), "full", []))
    train_rows = session.prepared.splits["train"]
    batch = session.prepared.collate([train_rows[i] for i in range(8)])
    plain, plain_bytes = _grads_and_saved(session, batch)
    assert enable_gradient_checkpointing(session.model)  # the tiny BERT inside the composed model
    again, checkpointed_bytes = _grads_and_saved(session, batch)
    assert checkpointed_bytes < 0.7 * plain_bytes
    assert plain.keys() == again.keys()
    for name in plain:  # dropout replays its RNG state in the recomputation: identical maths
        torch.testing.assert_close(again[name], plain[name], rtol=1e-4, atol=1e-6)


def test_trains_end_to_end(toy_task, isolated):
    run = train(build_run_config(str(toy_task), "lora", ["train.max_steps=3", "train.gradient_checkpointing=true"]), isolated / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "accuracy" in metrics["test"]


def test_refused_without_a_transformers_model():
    with pytest.raises(UserError, match="gradient_checkpointing"):
        enable_gradient_checkpointing(nn.Sequential(nn.Linear(4, 4)))
