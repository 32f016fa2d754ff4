"""mmsft.models.attention: CPU training attention with dropout = the math path with mmsft's mask; everything else sdpa."""
from __future__ import annotations

import pytest
import torch

from mmsft.models.attention import NAME, cpu_training_attention, use_cpu_training_attention
from mmsft.models.dropout import dropout

transformers = pytest.importorskip("transformers")


class _Module(torch.nn.Module):
    def __init__(self, causal=False, groups=1):
        super().__init__()
        self.is_causal, self.num_key_value_groups = causal, groups


def _qkv(heads=4, kv_heads=4, q_len=6, k_len=6, dim=8):
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(2, heads, q_len, dim, generator=gen), torch.randn(2, kv_heads, k_len, dim, generator=gen),
            torch.randn(2, kv_heads, k_len, dim, generator=gen))


def test_with_dropout_it_is_softmax_then_mmsfts_dropout_then_v():
    q, k, v = _qkv()
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    mask[0, ..., 4:] = False  # padding of the first sequence
    torch.manual_seed(11)
    out, weights = cpu_training_attention(_Module(), q, k, v, mask, dropout=0.3, scaling=0.5)
    torch.manual_seed(11)
    scores = (q @ k.transpose(-1, -2) * 0.5).masked_fill(~mask, torch.finfo(torch.float32).min)
    expected = dropout(scores.softmax(-1), 0.3) @ v
    assert weights is None and out.shape == (2, 6, 4, 8)
    torch.testing.assert_close(out, expected.transpose(1, 2))
    assert out[0].isfinite().all()


def test_causal_and_grouped_query_heads():
    """No mask and a causal module: position t never sees t + 1 (gradient zero); 2 kv heads serve 4 query heads."""
    q, k, v = _qkv(kv_heads=2)
    k.requires_grad_()
    torch.manual_seed(1)
    out, _ = cpu_training_attention(_Module(causal=True, groups=2), q, k, v, None, dropout=0.2)
    out[:, 2].sum().backward()
    assert k.grad[:, :, 3:].abs().sum() == 0 and k.grad[:, :, :3].abs().sum() > 0


@pytest.mark.parametrize("case", ["no dropout", "eval", "position bias"])
def test_everything_else_is_sdpa(case, monkeypatch):
    import mmsft.models.attention as attention

    calls = []
    monkeypatch.setattr(attention, "_sdpa", lambda: lambda *a, **kw: calls.append(kw) or ("sdpa", None))
    module = _Module()
    q, k, v = _qkv()
    kwargs = {"dropout": 0.0 if case == "no dropout" else 0.1}
    if case == "eval":
        module.eval()
    if case == "position bias":
        kwargs["position_bias"] = torch.zeros(1, 4, 6, 6)
    assert cpu_training_attention(module, q, k, v, None, **kwargs)[0] == "sdpa" and len(calls) == 1


def test_runner_switch_on_a_bert_keeps_eval_outputs_and_trains(tiny_bert):
    """Switched to the CPU training attention, a BERT's eval outputs are sdpa's exactly; in training its
    attention dropout draws mmsft's mask (no bernoulli_) and gradients reach the weights."""
    model = transformers.AutoModel.from_pretrained(str(tiny_bert), attn_implementation="sdpa",
                                                   attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    model.eval()
    before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert use_cpu_training_attention(model) == 1 and use_cpu_training_attention(model) == 0
    assert model.config._attn_implementation == NAME
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state, before)
    model.train()
    with torch.profiler.profile() as prof:
        model(input_ids=ids, attention_mask=mask).last_hidden_state.square().mean().backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bernoulli_" not in ops and "aten::random_" in ops
    assert model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert "mmsft" not in model.config.to_json_string()  # the name is never saved


def _reference(q, k, v, mask, p, scale):
    """The eager composition the function replaces, drawing the same mask (reseed before calling)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, -1, dtype=torch.promote_types(scores.dtype, torch.float32))
    return torch.matmul(dropout(probs.to(q.dtype), p), v)


def test_gradients_are_the_eager_paths_with_the_probabilities_recomputed():
    q, k, v = (t.double().requires_grad_() for t in _qkv(q_len=5, k_len=5))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False
    mask[0, :, 4] = False  # a query row with every key masked: softmax is uniform there, its gradient zero

    def ours(q, k, v):
        torch.manual_seed(5)
        return cpu_training_attention(_Module(), q, k, v, mask, dropout=0.25, scaling=0.7)[0]

    assert torch.autograd.gradcheck(ours, (q, k, v))
    torch.manual_seed(5)
    expected = _reference(q, k, v, mask, 0.25, 0.7).transpose(1, 2)
    grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    out = ours(q, k, v)
    torch.testing.assert_close(out, expected)
    for got, want in zip(torch.autograd.grad(out.square().sum(), (q, k, v)), grads):
        torch.testing.assert_close(got, want)


def test_under_bf16_autocast_it_keeps_q_k_v_the_half_width_probabilities_and_the_mask():
    q, k, v = (t.requires_grad_() for t in _qkv(q_len=16, k_len=16, dim=8))
    mask = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((str(t.dtype), tuple(t.shape))) or t, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(3)
            out = cpu_training_attention(_Module(), q, k, v, mask, dropout=0.1, scaling=0.35)[0]
    assert out.dtype == torch.bfloat16
    assert sorted(saved) == sorted([("torch.bfloat16", (2, 4, 16, 8))] * 3 + [("torch.bfloat16", (2, 4, 16, 16)),
                                                                            ("torch.bool", (2, 1, 16, 16))])  # no fp32 probabilities, no dropout mask
    torch.manual_seed(3)  # the eager maths on the half-width copies autocast would make
    expected = _reference(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, 0.1, 0.35).transpose(1, 2)
    torch.testing.assert_close(out, expected)
    got = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    want = torch.autograd.grad(expected.float().square().sum(), (q, k, v))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0.02, atol=0.02)
