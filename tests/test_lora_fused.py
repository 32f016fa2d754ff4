"""The fused LoRA update (mmsft.adapters.lora_fused): peft's maths, fewer saved activations, peft's names."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmsft.adapters.lora_fused import _LoraDelta, fuse_lora_updates

peft = pytest.importorskip("peft")


def _pair(dropout: float, **config):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 12), nn.GELU(), nn.Linear(12, 4))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["0", "2"], init_lora_weights=False, **config)
    reference = peft.get_peft_model(base, cfg)
    fused = copy.deepcopy(reference)
    return reference, fused, fuse_lora_updates(fused)


def _step(model, x):
    model.train()
    x = x.detach().clone().requires_grad_()
    y = model(x)
    y.square().sum().backward()
    return y, x.grad, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_fused_equals_peft_without_dropout():
    reference, fused, count = _pair(0.0)
    assert count == 2
    x = torch.randn(3, 5, 8)
    (y0, gx0, g0), (y1, gx1, g1) = _step(reference, x), _step(fused, x)
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(gx1, gx0)
    assert sorted(g1) == sorted(g0) and all(g1[n] is not None for n in g1)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name])


def test_fused_runs_under_bf16_autocast_and_matches_peft():
    """Under autocast the fused update runs in bf16 (its byte masks, not peft's bernoulli_ dropout) and agrees with
    peft's bf16 forward and gradients; the factors' gradients stay fp32."""
    reference, fused, _ = _pair(0.0)
    x = torch.randn(3, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (y0, gx0, g0), (y1, gx1, g1) = _step(reference, x), _step(fused, x)
    assert y1.dtype == y0.dtype == torch.bfloat16
    torch.testing.assert_close(y1.float(), y0.float(), atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(gx1, gx0, atol=5e-2, rtol=5e-2)
    for name in g0:
        assert g1[name].dtype == torch.float32
        torch.testing.assert_close(g1[name], g0[name], atol=5e-2, rtol=5e-2)
    _, fused_p, _ = _pair(0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.profiler.profile() as prof:
        _step(fused_p, x)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::random_" in ops and "aten::bernoulli_" not in ops


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_fused_gradients_are_exact(p):
    """gradcheck with the mask fixed by reseeding before every call: backward matches finite differences."""
    def delta(x, a, b):
        torch.manual_seed(7)
        return _LoraDelta.apply(x, a, b, p, 2.0)

    inputs = (torch.randn(2, 3, 8, dtype=torch.double, requires_grad=True),
              torch.randn(4, 8, dtype=torch.double, requires_grad=True), torch.randn(6, 4, dtype=torch.double, requires_grad=True))
    assert torch.autograd.gradcheck(delta, inputs)


def test_fused_dropout_is_inverted_dropout():
    """Same expectation as peft's nn.Dropout path: with A = I and B = I the update is x * keep / (1 - p)."""
    torch.manual_seed(3)
    x = torch.ones(200, 50)
    eye = torch.eye(50)
    out = _LoraDelta.apply(x, eye, eye, 0.25, 1.0)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.02
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.75))


def test_fused_dropout_rate_is_kept_to_16_bits_and_stays_unbiased():
    """p = 0.05 drops round(0.05 * 65536) / 65536 of the entries and rescales so the mean is still x."""
    torch.manual_seed(5)
    x = torch.ones(400, 100)
    eye = torch.eye(100)
    out = _LoraDelta.apply(x, eye, eye, 0.05, 1.0)
    assert abs((out == 0).float().mean().item() - 0.05) < 0.004
    assert abs(out.mean().item() - 1.0) < 0.01
    assert _LoraDelta.apply(x, eye, eye, 1e-6, 1.0).equal(x)  # below half a 16-bit step: no dropout


def test_frozen_base_weight_is_cast_once_under_autocast_and_recast_when_it_changes():
    """The frozen base linear's bf16 copy is made once per weight value: no cast op for it in later steps, the
    same outputs as peft's, and a changed weight (an in-place update, a new tensor) is cast again."""
    reference, fused, _ = _pair(0.0)
    x = torch.randn(3, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _step(fused, x)
        base = fused.base_model.model[0].base_layer
        first = base.__dict__["_mmsft_cast"][1]
        (y1, _, _), (y0, _, _) = _step(fused, x), _step(reference, x)
        assert base.__dict__["_mmsft_cast"][1] is first  # reused, not recast
        torch.testing.assert_close(y1.float(), y0.float(), atol=3e-2, rtol=3e-2)
        for model in (fused, reference):
            with torch.no_grad():
                model.base_model.model[0].base_layer.weight.mul_(-1.0)
        (y1, _, _), (y0, _, _) = _step(fused, x), _step(reference, x)
        assert base.__dict__["_mmsft_cast"][1] is not first
        torch.testing.assert_close(y1.float(), y0.float(), atol=3e-2, rtol=3e-2)


def test_fused_keeps_fewer_activations():
    """peft's path keeps a float mask and the dropped copy per layer; the fused one keeps a one-byte mask."""
    def saved_bytes(model, x):
        sizes = {}

        def pack(t):
            sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x).sum()
        return sum(sizes.values())

    reference, fused, _ = _pair(0.1)
    x = torch.randn(64, 30, 8, requires_grad=True)
    assert saved_bytes(fused, x) < 0.8 * saved_bytes(reference, x)


def test_fused_leaves_names_eval_and_merge_to_peft():
    reference, fused, _ = _pair(0.1)
    assert list(fused.state_dict()) == list(reference.state_dict())
    x = torch.randn(3, 8)
    reference.eval(), fused.eval()
    torch.testing.assert_close(fused(x), reference(x))  # eval: peft's own forward, no dropout
    merged = fused.merge_and_unload()
    torch.testing.assert_close(merged(x), reference(x), atol=1e-5, rtol=1e-5)


def test_dora_and_lora_bias_keep_peft_forward():
    assert _pair(0.1, use_dora=True)[2] == 0
    assert _pair(0.1, lora_bias=True)[2] == 0


def test_siblings_share_one_half_width_copy_of_their_input_and_keep_no_mask():
    """Three LoRA linears fed the same x (an attention's q, k, v) keep one bf16 copy of it between them, and no
    dropout mask (backward draws it again from its seed): the saved tensors are that copy and the factors."""
    torch.manual_seed(0)

    class Qkv(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(16, 8)

        def forward(self, x):
            return self.q(x) * self.k(x) + self.v(x)

    model = peft.get_peft_model(Qkv(), peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2, target_modules=["q", "k", "v"],
                                                             init_lora_weights=False))
    assert fuse_lora_updates(model) == 3
    model.train()
    x = torch.randn(4, 10, 16)
    saved = {}

    def pack(t):  # one entry per storage
        saved.setdefault(t.untyped_storage().data_ptr(), t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().sum().backward()
    inputs = [t for t in saved.values() if t.shape == x.shape]
    assert len(inputs) == 1 and inputs[0].dtype == torch.bfloat16
    assert not any(t.dtype in (torch.uint8, torch.bool) for t in saved.values())
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert len(grads) == 6 and all(g is not None and g.abs().sum() > 0 for g in grads)
