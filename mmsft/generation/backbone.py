"""Causal and seq2seq LM backbones: the ``lm`` family.

The LM head stays inside the backbone on purpose: both zoo LMs tie it to the input embeddings, so new
special-token rows train once for input and output, and a separate head would untie and copy Gemma's
262k x 640 matrix.  The ``lm`` head (``mmsft.generation.head``) therefore asks the backbone for the
vocabulary logits it needs (``FeatureRequest.logits_from``: with left padding every target sits at
the end, so only the trailing span is computed), and ``generate`` decodes with the same network --
modules hooked onto its blocks included.
"""
from __future__ import annotations

import inspect

import torch

from ..errors import UserError
from ..models.backbone import HFBackbone
from ..models.features import FeatureRequest, Features
from ..registry import BACKBONE_FAMILIES
from ..zoo import resolve


def load_lm(name: str):
    """(model, tokenizer, zoo entry) for a zoo name or a local causal-LM / seq2seq folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    resolved = resolve(name)
    config = AutoConfig.from_pretrained(resolved.path)
    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    try:
        model = auto.from_pretrained(resolved.path, dtype=torch.float32)
    except ValueError as exc:  # e.g. an encoder-only checkpoint
        raise UserError(f"cannot load a generative LM: {str(exc).splitlines()[0]}", where="model.backbone",
                        expected="a causal-LM or seq2seq checkpoint (smollm2-135m, gemma3-270m, T5, Marian, ...)") from None
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token", where="model.backbone", expected="a tokenizer with eos_token")
    if tokenizer.pad_token_id is None:  # only ever used under attention_mask == 0, never to find EOS
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, resolved.entry


def context_length(model, tokenizer) -> int | None:
    """Longest sequence the model handles (None: relative positions, no hard limit known)."""
    n = getattr(model.config, "max_position_embeddings", None)
    if n:
        return int(n)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**7 else None


class OutputLayer:
    """States -> logits exactly as the model's own forward maps them (output embedding, soft cap where
    the config has one); ``vocab_size`` lets a chunked loss size its chunks."""

    def __init__(self, causal):
        self.head = causal.get_output_embeddings()
        self.cap = getattr(causal.config, "final_logit_softcapping", None)
        self.vocab_size = int(self.head.weight.shape[0])

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        logits = self.head(states)
        return torch.tanh(logits / self.cap) * self.cap if self.cap else logits


@BACKBONE_FAMILIES.register("lm")
class LMBackbone(HFBackbone):
    """``forward`` -> ``Features(logits of the requested trailing positions, attention_mask, tokens on request)``."""

    family = "lm"

    def __init__(self, model, name: str):
        super().__init__(model, name)
        self.encoder_decoder = bool(model.config.is_encoder_decoder)
        accepted = inspect.signature(model.forward).parameters  # the bare HF model, before any adapter wraps it
        self._positions = "position_ids" in accepted  # ALiBi models (BLOOM) take none
        self._keep = "logits_to_keep" in accepted
        # seq2seq: the labels are the decoder's teacher-forced inputs
        self.input_keys = ("input_ids", "attention_mask", "labels") if self.encoder_decoder else ("input_ids", "attention_mask")

    loader = staticmethod(load_lm)

    def context_length(self, tokenizer) -> int | None:
        return context_length(self.model, tokenizer)

    def forward(self, inputs: dict, request: FeatureRequest = FeatureRequest()) -> Features:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if self.encoder_decoder:
            out = self.model(input_ids=ids, attention_mask=mask, labels=inputs.get("labels"), use_cache=False)
            return Features(logits=out.logits, attention_mask=mask, raw=out)
        kwargs = {}
        if self._positions:  # explicit positions: left padding must not shift the real tokens' positions
            kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        length = ids.shape[1]
        keep = length - (request.logits_from or 0)
        if request.logits_as_states:
            causal = self.causal_lm()
            out = causal.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
            return Features(states=out.last_hidden_state[:, -keep:], project=OutputLayer(causal), attention_mask=mask, raw=out)
        if self._keep:
            kwargs["logits_to_keep"] = keep
        out = self.model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
        return Features(logits=out.logits[:, -keep:], attention_mask=mask, raw=out)

    def causal_lm(self):
        """The Hugging Face causal LM under any adapter wrapper (peft injects its layers in place)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def generate(self, tokenizer, prompts: list[list[int]], options, desc: str = "generate"):
        from .generate import generate

        return generate(self.model, tokenizer, prompts, options, desc=desc)
