"""Each adapter's trainable-parameter set, stacking, seeding of adapter weights, and poolings."""
import pytest
import torch

from mmsft.adapters import apply_adapters
from mmsft.errors import UserError
from mmsft.registry import ADAPTERS, POOLERS
from mmsft.spec import AdapterSpec


def _model(tiny_bert):
    from mmsft.models import ComposedModel
    from mmsft.models.heads import ClassificationHead, ClassificationOptions
    from mmsft.models.text import TextBackbone

    backbone, _ = TextBackbone.load(str(tiny_bert))
    return ComposedModel(backbone, {}, {"classification": ClassificationHead(backbone, ClassificationOptions(pooling="mean"), num_labels=3)})


def _spec(method, **options):
    return AdapterSpec(method=method, options=ADAPTERS.get(method).parse_options(options))


def _apply(tiny_bert, method, **options):
    model = _model(tiny_bert)
    apply_adapters(model, {method: _spec(method, **options)})
    return model, {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_trains_everything(tiny_bert):
    model, trainable = _apply(tiny_bert, "full")
    assert trainable == {n for n, _ in model.named_parameters()}


def test_lora_trains_only_lora_matrices_and_heads(tiny_bert):
    model, trainable = _apply(tiny_bert, "lora", r=4, target_modules=["query", "value"])
    assert trainable and all("lora_" in n or n.startswith("heads.") for n in trainable)
    assert any("query.lora_A" in n for n in trainable) and any("value.lora_B" in n for n in trainable)
    assert not any(".key." in n for n in trainable)
    assert all(n.startswith("backbone.model.base_model.model.") for n in trainable if not n.startswith("heads."))
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
        apply_adapters(model, {"lora": _spec("lora", r=4)})
        weights.append(next(p for n, p in model.named_parameters() if "lora_A" in n).detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_frozen_variants(tiny_bert):
    model, trainable = _apply(tiny_bert, "frozen")
    assert trainable == {"heads.classification.net.1.weight", "heads.classification.net.1.bias"}
    model.train()
    assert not model.backbone.training and model.heads.training  # frozen backbone stays in eval mode

    _, trainable = _apply(tiny_bert, "frozen", train_top_layers=1)
    backbone = {n for n in trainable if n.startswith("backbone.")}
    assert backbone and all(n.startswith("backbone.model.encoder.layer.1.") for n in backbone)

    _, trainable = _apply(tiny_bert, "frozen", train_modules=["embeddings.word_embeddings"])
    assert "backbone.model.embeddings.word_embeddings.weight" in trainable and len(trainable) == 3

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
    from types import SimpleNamespace

    from mmsft.models.heads import default_pooling
    from mmsft.zoo import ZOO

    assert default_pooling(SimpleNamespace(family="text", entry=ZOO.get("minilm-l6"), model=None)) == "mean"


def test_stacked_adapters_train_the_union(tiny_bert):
    """frozen_top2-style top blocks + LoRA on the attention: both sets train, nothing else."""
    model = _model(tiny_bert)
    apply_adapters(model, {"top": _spec("frozen", train_top_layers=1), "lora": _spec("lora", r=4, target_modules=["query"])})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    top = {n for n in trainable if ".encoder.layer.1." in n and "lora_" not in n}
    assert lora and top and any(".layer.0." in n for n in lora)  # LoRA reaches below the unfrozen block
    assert trainable == lora | top | {"heads.classification.net.1.weight", "heads.classification.net.1.bias"}
    assert "backbone" not in model._keep_eval  # some backbone weights train: dropout stays on


def test_two_named_lora_adapters_stack_and_both_train(tiny_bert):
    model = _model(tiny_bert)
    apply_adapters(model, {"first": _spec("lora", r=2, target_modules=["query"]), "second": _spec("lora", r=4, target_modules=["value"])})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("query.lora_A.first." in n for n in trainable) and any("value.lora_B.second." in n for n in trainable)
    assert set(model.backbone.model.base_model.active_adapters) == {"first", "second"}


def test_full_cannot_be_stacked(tiny_bert):
    with pytest.raises(UserError, match="cannot be stacked"):
        apply_adapters(_model(tiny_bert), {"full": _spec("full"), "lora": _spec("lora")})
