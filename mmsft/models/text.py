"""Text encoder backbones: any Hugging Face ``AutoModel`` (BERT-style encoders, or a decoder's base
model when a classifier sits on an LM), loaded from a zoo name, a local folder or (online) a hub id."""
from __future__ import annotations

from ..registry import BACKBONE_FAMILIES
from ..zoo import resolve
from .backbone import HFBackbone
from .features import FeatureRequest, Features


def load_text_model(name: str):
    """(AutoModel, tokenizer, zoo entry or None)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "weights not used" chatter for sentence-transformer checkpoints
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        model = AutoModel.from_pretrained(resolved.path)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer, resolved.entry


@BACKBONE_FAMILIES.register("text")
class TextBackbone(HFBackbone):
    """Token states of a text encoder: ``forward`` returns ``Features(tokens, attention_mask, raw)``."""

    family = "text"
    input_keys = ("input_ids", "attention_mask", "token_type_ids")
    loader = staticmethod(load_text_model)

    def forward(self, inputs: dict, request: FeatureRequest = FeatureRequest()) -> Features:
        mask = inputs["attention_mask"]
        kwargs = {"token_type_ids": inputs["token_type_ids"]} if inputs.get("token_type_ids") is not None else {}
        out = self.model(input_ids=inputs["input_ids"], attention_mask=mask, **kwargs)
        return Features(tokens=out.last_hidden_state, attention_mask=mask, raw=out)
