"""CPU training: mmsft.models.dropout (nn.Dropout's maths with a cheaper mask) and train.pad_to_multiple_of."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mmsft.models.dropout import CpuDropout, draw_seed, dropout, keep_mask, use_cpu_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_mask_drops_p_of_the_entries_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(500, 400)
    out = dropout(x, p)
    assert abs((out == 0).float().mean().item() - p) < 0.005
    assert abs(out.mean().item() - 1.0) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(65536 / (65536 - round(65536 * p))))


def test_mask_is_one_byte_per_element_and_seeded():
    keep, _ = keep_mask((3, 7, 5), 0.3, torch.device("cpu"), seed=1)
    assert keep.dtype == torch.uint8 and keep.shape == (3, 7, 5) and set(keep.unique().tolist()) <= {0, 1}
    assert keep_mask((3, 7, 5), 0.3, torch.device("cpu"), seed=1)[0].equal(keep)
    assert not keep_mask((3, 7, 5), 0.3, torch.device("cpu"), seed=2)[0].equal(keep)
    torch.manual_seed(1)  # the seed comes from the global generator, as nn.Dropout's mask does
    first = draw_seed(0.3, torch.device("cpu"))
    torch.manual_seed(1)
    assert draw_seed(0.3, torch.device("cpu")) == first and draw_seed(0.0, torch.device("cpu")) is None


def test_gradient_is_the_mask_times_the_scale():
    x = torch.randn(64, 33, dtype=torch.double, requires_grad=True)
    torch.manual_seed(2)
    out = dropout(x, 0.2)
    out.backward(torch.ones_like(out))
    kept = out.detach() != 0
    scale = 65536 / (65536 - round(65536 * 0.2))
    assert torch.equal(x.grad, kept.double() * scale)
    assert torch.autograd.gradcheck(lambda t: (torch.manual_seed(3), dropout(t, 0.4))[1], (x[:4, :5].detach().clone().requires_grad_(),))


def test_bf16_stays_bf16_and_eval_or_zero_rate_is_the_identity():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    assert dropout(x, 0.1).dtype == torch.bfloat16
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    assert dropout(torch.ones(10), 1.0).eq(0).all()


def test_use_cpu_dropout_swaps_plain_dropouts_only_and_keeps_state():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Sequential(nn.Dropout(0.3), nn.Dropout1d(0.2)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_cpu_dropout(model) == 2 and use_cpu_dropout(model) == 0
    assert type(model[1]) is CpuDropout and model[1].p == 0.1 and isinstance(model[2][0], nn.Dropout)
    assert type(model[2][1]) is nn.Dropout1d  # channel dropout has other maths: left alone
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    x = torch.randn(2, 4)
    assert torch.equal(model[1](x), x)


def test_pad_to_multiple_of_pads_text_batches_and_is_refused_elsewhere():
    """``train.pad_to_multiple_of`` pads a text-classification batch up to the multiple (masked out); a kind
    that pads its own way refuses it before anything is built."""
    from mmsft.errors import UserError
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    cfg = build_run_config("finance_sentiment", "frozen", ["train.pad_to_multiple_of=16"])
    prepared = build_session(cfg).prepared
    rows = [prepared.splits["train"][i] for i in range(5)]
    batch = prepared.collate(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape[1] == -(-longest // 16) * 16
    assert int(batch["attention_mask"].sum()) == sum(len(r["input_ids"]) for r in rows)
    with pytest.raises(UserError, match="pads its batches its own way"):
        build_run_config("translation_en_de", "lora", ["train.pad_to_multiple_of=8"])
    with pytest.raises(UserError, match="pad_to_multiple_of must be >= 1"):
        build_run_config("finance_sentiment", "lora", ["train.pad_to_multiple_of=0"])


def test_plain_dropout_keeps_a_byte_mask_and_nothing_else():
    x = torch.randn(40, 30, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.manual_seed(4)
        out = dropout(x, 0.3)
    assert [(t.dtype, t.shape) for t in saved] == [(torch.uint8, x.shape)]
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad != 0, out.detach() != 0)  # backward's mask is the forward's
