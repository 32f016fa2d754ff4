"""Each adapter's trainable-parameter set, seeding of adapter weights, and poolings."""
import pytest
import torch

from mmsft.adapters import ADAPTERS
from mmsft.errors import UserError
from mmsft.models.heads import POOLERS
from mmsft.models.text import TextClassifier, load_text_backbone


def _model(tiny_bert):
    backbone, _, _ = load_text_backbone(str(tiny_bert))
    return TextClassifier(backbone, "mean", num_labels=3, dropout=0.1, head_hidden=0)


def _apply(tiny_bert, method, **options):
    model = _model(tiny_bert)
    adapter = ADAPTERS.get(method)
    adapter.apply(model, adapter.parse_options(options))
    return model, {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_trains_everything(tiny_bert):
    model, trainable = _apply(tiny_bert, "full")
    assert trainable == {n for n, _ in model.named_parameters()}


def test_lora_trains_only_lora_matrices_and_heads(tiny_bert):
    model, trainable = _apply(tiny_bert, "lora", r=4, target_modules=["query", "value"])
    assert trainable and all("lora_" in n or n.startswith("heads.") for n in trainable)
    assert any("query.lora_A" in n for n in trainable) and any("value.lora_B" in n for n in trainable)
    assert not any(".key." in n for n in trainable)
    assert {n for n in trainable if n.startswith("heads.")} == {"heads.classification.net.1.weight", "heads.classification.net.1.bias"}


def test_dora_adds_magnitude_vectors(tiny_bert):
    _, trainable = _apply(tiny_bert, "lora", r=4, use_dora=True, target_modules=["query"])
    assert any("lora_magnitude_vector" in n for n in trainable)


def test_lora_bad_target_is_a_user_error(tiny_bert):
    with pytest.raises(UserError, match="adapter.options.target_modules"):
        _apply(tiny_bert, "lora", target_modules=["no_such_layer"])


def test_lora_init_depends_only_on_seed(tiny_bert):
    from mmsft.pipeline import set_seed

    weights = []
    for _ in range(2):
        model = _model(tiny_bert)
        set_seed(7)
        ADAPTERS.get("lora").apply(model, ADAPTERS.get("lora").parse_options({"r": 4}))
        weights.append(next(p for n, p in model.named_parameters() if "lora_A" in n).detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_frozen_variants(tiny_bert):
    model, trainable = _apply(tiny_bert, "frozen")
    assert trainable == {"heads.classification.net.1.weight", "heads.classification.net.1.bias"}
    model.train()
    assert not model.backbone.training and model.heads.training  # frozen backbone stays in eval mode

    _, trainable = _apply(tiny_bert, "frozen", train_top_layers=1)
    backbone = {n for n in trainable if n.startswith("backbone.")}
    assert backbone and all(n.startswith("backbone.encoder.layer.1.") for n in backbone)

    _, trainable = _apply(tiny_bert, "frozen", train_modules=["embeddings.word_embeddings"])
    assert "backbone.embeddings.word_embeddings.weight" in trainable and len(trainable) == 3

    _, trainable = _apply(tiny_bert, "frozen", train_norms=True)
    assert {n for n in trainable if n.startswith("backbone.")} and all("LayerNorm" in n for n in trainable if n.startswith("backbone."))

    with pytest.raises(UserError, match="train_top_layers"):
        _apply(tiny_bert, "frozen", train_top_layers=5)
    with pytest.raises(UserError, match="no backbone module matches"):
        _apply(tiny_bert, "frozen", train_modules=["decoder*"])


def test_poolings_ignore_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert POOLERS.get("mean")(hidden, mask).squeeze(-1).tolist() == [2.0, 4.0]
    assert POOLERS.get("cls")(hidden, mask).squeeze(-1).tolist() == [1.0, 2.0]
    assert POOLERS.get("last")(hidden, mask).squeeze(-1).tolist() == [3.0, 6.0]
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert POOLERS.get("last")(hidden, left).squeeze(-1).tolist() == [100.0, 6.0]


def test_minilm_defaults_to_mean_pooling():
    from mmsft.models.text import default_pooling
    from mmsft.zoo import ZOO

    assert default_pooling(None, ZOO.get("minilm-l6")) == "mean"
