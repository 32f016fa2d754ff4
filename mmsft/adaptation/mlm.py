"""``target_mlm``'s stage: continued masked-LM training of a text backbone on source + target texts.

Domain-adaptive pretraining (DAPT, Gururangan et al. 2020; the MLM half of UDALM, Karouzakis et al.
2021): before the task fine-tune, the encoder keeps training on its pretraining objective over the
unlabelled texts of both domains, so its representations cover the target's vocabulary and style.
The stage writes a plain Hugging Face folder (encoder weights + tokenizer + ``mlm.json``), which the
fine-tune then loads as ``model.backbone`` like any local backbone.

The MLM head.  all-MiniLM-L6-v2 (``minilm-l6``) is a ``BertModel`` saved by sentence-transformers:
its checkpoint has no MLM head weights.  ``AutoModelForMaskedLM`` builds BERT's own head on it --
``transform`` (dense H->H, GELU, LayerNorm) and a decoder whose weight is tied to the input word
embeddings, plus a per-token bias -- with the transform and bias freshly initialised (listed in
``mlm.json`` as ``head_initialised``) and the decoder reusing the pretrained embeddings, so the head
starts from the vocabulary geometry the encoder already has.  Every encoder weight trains (full
continued pretraining; the head is dropped afterwards).  Masking is BERT's: ``mask_prob`` of the
non-special tokens are predicted, 80% of them replaced by [MASK], 10% by a random token, 10% kept.
Logits are computed at the masked positions only (the 30k-way projection dominates otherwise).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch.nn import functional as F

from ..errors import UserError


@dataclass
class MlmOptions:
    epochs: float = 1.0  # passes over source + target texts
    max_steps: Optional[int] = None  # overrides epochs
    lr: float = 5.0e-5
    batch_size: int = 16
    mask_prob: float = 0.15
    max_length: Optional[int] = None  # default: the task's model.max_length
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_texts: Optional[int] = None  # per domain: use only the first N texts (smoke runs)
    per_seed: bool = True  # one stage per fine-tune seed (seed spread includes the stage); false: one per pair

    def validate(self, path: str) -> None:
        where = path or "target_mlm"
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1 or not 0 < self.mask_prob < 1 or not 0 <= self.warmup_ratio < 1:
            raise UserError("need epochs > 0, lr > 0, batch_size >= 1, mask_prob in (0, 1), warmup_ratio in [0, 1)", where=where)
        for name in ("max_steps", "max_length", "max_texts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be >= 1, got {value}", where=f"{where}.{name}")


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer, prob: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking -> (masked inputs, labels with -100 where nothing is predicted)."""
    special = torch.tensor([tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True) for row in input_ids.tolist()],
                           dtype=torch.bool)
    candidates = attention_mask.bool() & ~special
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & candidates
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (draw < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[swap] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[swap]
    return inputs, labels


def masked_lm_loss(model, inputs: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the masked positions; BERT-style models run their head there only."""
    head = getattr(model, "cls", None)
    if head is None:  # other MLM architectures: the model's own full-sequence loss
        return model(input_ids=inputs, attention_mask=attention_mask, labels=labels).loss
    hidden = model.base_model(input_ids=inputs, attention_mask=attention_mask).last_hidden_state
    picked = labels != -100
    if not picked.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(head(hidden[picked]).float(), labels[picked])


def _load(path: str):
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: cls.predictions.*" is expected (see module docstring)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    except ValueError as exc:
        raise UserError(f"target_mlm needs an encoder with a masked-LM form: {exc}", where="model.backbone") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.mask_token_id is None:
        raise UserError("target_mlm needs a tokenizer with a mask token", where="model.backbone")
    return model, tokenizer, sorted(info.get("missing_keys", []))


def continue_mlm(backbone: str, texts: list[str], folder: Path, options: MlmOptions, max_length: int, seed: int,
                 threads: int = 0) -> dict:
    """Train ``backbone`` (zoo name or folder) on ``texts`` with MLM; write the adapted encoder to
    ``folder`` (atomically) and return the stage's statistics (also in ``folder/mlm.json``)."""
    from tqdm.auto import tqdm
    from transformers import AutoModel

    from ..atomic import atomic_folder, write_json
    from ..training.optim import build_optimizer
    from ..training.sampling import epoch_batches
    from ..training.schedules import build_scheduler
    from ..zoo import resolve

    if threads:
        torch.set_num_threads(threads)
    path = resolve(backbone).path
    torch.manual_seed(seed)
    model, tokenizer, initialised = _load(path)
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(x) for x in ids]
    per_epoch = math.ceil(len(ids) / options.batch_size)
    total = options.max_steps or max(1, math.ceil(options.epochs * per_epoch))
    optimizer = build_optimizer(model, options.lr, options.weight_decay)
    scheduler = build_scheduler(optimizer, "linear", total, options.warmup_ratio)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses, step, epoch, tick = [], 0, 0, time.perf_counter()
    bar = tqdm(total=total, desc="target_mlm", unit="step", mininterval=5)
    while step < total:
        for batch_ids in epoch_batches(lengths, options.batch_size, seed, epoch):
            padded = tokenizer.pad({"input_ids": [ids[i] for i in batch_ids]}, return_tensors="pt")
            inputs, labels = mask_tokens(padded["input_ids"], padded["attention_mask"], tokenizer, options.mask_prob, generator)
            loss = masked_lm_loss(model, inputs, padded["attention_mask"], labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
            if step >= total:
                break
        epoch += 1
    bar.close()
    seconds = time.perf_counter() - tick
    encoder = AutoModel.from_pretrained(path)  # the original model class (with its pooler), given the trained encoder weights
    result = encoder.load_state_dict(model.base_model.state_dict(), strict=False)
    if result.unexpected_keys or any(not k.startswith("pooler.") for k in result.missing_keys):
        raise RuntimeError(f"MLM encoder does not match the backbone: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    window = max(1, len(losses) // 10)
    stats = {"backbone": backbone, "texts": len(ids), "steps": step, "epochs": round(step / per_epoch, 3), "seconds": round(seconds, 1),
             "loss_first_10pct": round(sum(losses[:window]) / window, 4), "loss_last_10pct": round(sum(losses[-window:]) / window, 4),
             "head_initialised": initialised, "decoder_tied_to_embeddings": tied, "seed": seed, "max_length": max_length}
    with atomic_folder(folder, replace=folder.exists()) as tmp:
        encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "mlm.json", stats)
    return stats
