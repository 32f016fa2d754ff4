"""The LM head's chunked token loss: the same value and gradients as full-vocabulary cross-entropy,
and it never holds more than one chunk of logits."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from gen_fixtures import *  # noqa: E402,F401,F403

from mmsft.generation.chunked_loss import chunked_cross_entropy  # noqa: E402


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_chunked_equals_full_cross_entropy_value_and_gradients(smoothing):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    states = torch.randn(3, 7, 8, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7))
    labels[0, :4] = -100
    labels[2, 5:] = -100
    full = F.cross_entropy(head(states).reshape(-1, 50), labels.reshape(-1), ignore_index=-100, label_smoothing=smoothing)
    g_full = torch.autograd.grad(full, [states, head.weight])
    chunked = chunked_cross_entropy(states, labels, head, 50, label_smoothing=smoothing, budget=150)  # 3 positions a chunk
    g_chunked = torch.autograd.grad(chunked, [states, head.weight])
    assert torch.allclose(full, chunked, atol=1e-6)
    for a, b in zip(g_full, g_chunked):
        assert torch.allclose(a, b, atol=1e-6)


def test_chunks_bound_the_logits_alive_at_once():
    """Logits are only ever built for a chunk of labelled positions, never for ignored ones."""
    head = torch.nn.Linear(4, 10, bias=False)
    seen = []
    project = lambda s: (seen.append(s.shape[0]), head(s))[1]  # noqa: E731
    states = torch.randn(2, 9, 4, requires_grad=True)
    labels = torch.full((2, 9), -100)
    labels[:, 2:] = 1  # 14 labelled positions
    loss = chunked_cross_entropy(states, labels, project, 10, budget=40)  # 4 positions a chunk
    loss.backward()
    assert max(seen) == 4 and sum(seen[:4]) == 14  # forward: 4 + 4 + 4 + 2; backward recomputes each chunk
    assert len(seen) == 8


def test_no_labelled_position_gives_nan_like_cross_entropy():
    head = torch.nn.Linear(4, 10)
    states = torch.randn(1, 3, 4, requires_grad=True)
    labels = torch.full((1, 3), -100)
    assert torch.isnan(chunked_cross_entropy(states, labels, head, 10))
    assert torch.isnan(F.cross_entropy(head(states).reshape(-1, 10), labels.reshape(-1)))


def test_lm_head_states_path_matches_the_logits_path(tiny_llama):
    """The composed model's training loss through final states equals the loss over the model's own logits."""
    from transformers import AutoModelForCausalLM

    from mmsft.generation.backbone import LMBackbone
    from mmsft.generation.head import LMHead
    from mmsft.models.features import FeatureRequest

    torch.manual_seed(0)
    backbone = LMBackbone(AutoModelForCausalLM.from_pretrained(tiny_llama), "tiny")
    head = LMHead(backbone)
    ids = torch.randint(3, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, :3] = -100
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    request = head.request(batch)
    assert request.logits_as_states
    states_out = head(backbone(batch, request), batch)
    assert states_out["logits"] is None and states_out["states"] is not None
    loss_states = head.loss(states_out, batch)
    g_states = torch.autograd.grad(loss_states, list(backbone.parameters()))
    plain = FeatureRequest(logits_from=request.logits_from)
    logits_out = head(backbone(batch, plain), batch)
    loss_logits = head.loss(logits_out, batch)
    g_logits = torch.autograd.grad(loss_logits, list(backbone.parameters()))
    assert int(states_out["tokens"]) == int(logits_out["tokens"]) > 0
    assert torch.allclose(loss_states, loss_logits, atol=1e-5)
    for a, b in zip(g_states, g_logits):
        assert torch.allclose(a, b, atol=1e-5)
