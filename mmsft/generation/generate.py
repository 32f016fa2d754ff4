"""Batched generation: left padding, greedy, beam search or sampling, a token budget, stop at EOS.

Prompts are sorted by length into batches (less padding) and the outputs put back in input order.
Each output says whether decoding stopped by EOS (``eos_rate``) or ran into ``max_new_tokens``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from .encoding import pad_left, pad_right


@dataclass
class Generation:
    text: str
    token_ids: list[int]  # new tokens before EOS
    stopped_by_eos: bool


@dataclass
class GenerateOptions:
    max_new_tokens: int = 64
    num_beams: int = 1
    batch_size: int = 16
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    temperature: float = 0.0  # 0 = deterministic (greedy / beam); > 0 samples (seed torch first)
    top_p: float = 1.0  # nucleus sampling, used when temperature > 0
    stop_at_newline: bool = False  # end an output at its first line break (one-line answers from base LMs)

    def validate(self, path: str) -> None:
        for name in ("max_new_tokens", "num_beams", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1", where=f"{path}.{name}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature} and {self.top_p}",
                            where=path, expected="temperature: 0 (greedy) or e.g. 0.7; top_p: e.g. 0.9")


def _config(model, opts: GenerateOptions, eos_id: int, pad_id: int):
    from transformers import GenerationConfig

    kwargs = dict(max_new_tokens=opts.max_new_tokens, num_beams=opts.num_beams, do_sample=opts.temperature > 0,
                  eos_token_id=eos_id, pad_token_id=pad_id, repetition_penalty=opts.repetition_penalty,
                  no_repeat_ngram_size=opts.no_repeat_ngram_size)
    if opts.stop_at_newline:
        kwargs["stop_strings"] = ["\n"]
    if opts.temperature > 0:
        kwargs.update(temperature=opts.temperature, top_p=opts.top_p)
    if opts.num_beams > 1:
        kwargs["early_stopping"] = True
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    if model.config.is_encoder_decoder and start is not None:
        kwargs["decoder_start_token_id"] = start
    return GenerationConfig(**kwargs)


def split_at_eos(new: list[int], eos_id: int) -> tuple[list[int], bool]:
    """Tokens before the first EOS and whether there was one (pad == eos is safe: the first wins)."""
    if eos_id in new:
        return new[: new.index(eos_id)], True
    return new, False


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], opts: GenerateOptions, eos_id: int | None = None,
             desc: str = "generate") -> list[Generation]:
    """``model`` is any Hugging Face generation model (peft-wrapped too); prompts are token ids."""
    eos_id = tokenizer.eos_token_id if eos_id is None else eos_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    encdec = bool(model.config.is_encoder_decoder)
    config = _config(model, opts, eos_id, pad_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Generation | None] = [None] * len(prompts)
    batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", mininterval=1 if sys.stderr.isatty() else 30, disable=len(batches) < 2):
        seqs = [prompts[i] for i in idx]
        if encdec:
            ids, mask = pad_right(seqs, pad_id), pad_right([[1] * len(s) for s in seqs], 0)
        else:
            ids, mask = pad_left(seqs, pad_id)
        result = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                                tokenizer=tokenizer if opts.stop_at_newline else None)
        new = result[:, 1:] if encdec else result[:, ids.shape[1]:]
        for row, i in enumerate(idx):
            toks, stopped = split_at_eos(new[row].tolist(), eos_id)
            out[i] = Generation(tokenizer.decode(toks, skip_special_tokens=True).strip(), toks, stopped)
    model.train(was_training)
    return out  # type: ignore[return-value]
