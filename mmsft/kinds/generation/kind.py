"""Generative SFT (translation, dialogue replies) on causal LMs, or on any local seq2seq LM.

Data rows are conversations (``readers.py``); ``data.prompt`` formats user turns,
``data.template`` (a ``TEMPLATES`` entry) renders them, the role/knowledge tokens are added to the
tokenizer with the embedding resized, and ``mmsft.generation.encoding`` masks the prompt and closes
every target with EOS.  Evaluation generates (left-padded batches, greedy or beam) and scores with
the offline metrics; the validation loss is reported beside them.  Under LoRA the new token rows
train through ``backbone.new_token_ids``, which the lora adapter reads.  Decoding goes through the
composed model, so modules hooked onto the LM's blocks change what ``eval`` and ``predict`` produce.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from ...errors import UserError
from ...generation.encoding import CausalCollator, Seq2SeqCollator, encode, tokenize
from ...generation.templates import TEMPLATES
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from . import knowledge as kn
from . import qc
from .data import GenData, GenerationData, build_splits, parse_input
from .prompting import last_turns, to_messages


@lru_cache(maxsize=8)
def _lm_config(path: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def _md(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


@register_kind
class Generation(TaskKind):
    name = "generation"
    DataSpec = GenerationData
    metric_inputs = "text"
    extra_validation_keys = ("eos_rate", "loss", "mean_new_tokens")
    backbone_family = "lm"
    head_types = ("lm",)
    knowledge_inputs = ("retrieved_segments",)  # see .knowledge

    # -- data and model --------------------------------------------------------------------------
    def load_data(self, cfg) -> GenData:
        """Read and check every row (prompt fields included) before anything is built or written."""
        splits = build_splits(cfg.data)
        for rows in splits.values():
            for row in rows:
                to_messages(row, cfg.data.prompt, cfg.data.system)
        return GenData(splits, {"rows": {k: len(v) for k, v in splits.items()}})

    def knowledge_rows(self, cfg, data: GenData) -> dict:
        """{split: [{text, reply, fields, source}]}: what a KB derived from the task reads (``mmsft kb --task``)."""
        return kn.rows_view(data.splits)

    def adapt_backbone(self, cfg, backbone, tokenizer) -> None:
        """Role/knowledge tokens added (embedding rows resized and initialised), template and context checked."""
        from ...generation.tokens import add_special_tokens, resize_for_tokens

        new_ids = add_special_tokens(tokenizer) if cfg.data.special_tokens else []
        if new_ids:
            resize_for_tokens(backbone.model, tokenizer, new_ids)
        backbone.new_token_ids = new_ids  # read by the lora adapter: new rows train under LoRA
        TEMPLATES.get(cfg.data.template).check(tokenizer)
        context = backbone.context_length(tokenizer)
        if context and cfg.model.max_length > context:
            raise UserError(f"model.max_length {cfg.model.max_length} exceeds the model's context of {context} tokens", where="model.max_length")

    def build_heads(self, cfg, data, backbone) -> dict:
        from ...registry import HEADS

        heads = {}
        for name, spec in cfg.model.heads.items():
            loss = spec.loss or cfg.loss
            if loss.name != "cross_entropy":
                raise UserError(f"generation trains with token cross-entropy, not '{loss.name}'", where="loss.name", expected="cross_entropy")
            heads[name] = HEADS.get(spec.type)(backbone, spec.options, label_smoothing=loss.label_smoothing)
        return heads

    def _encode(self, cfg, tokenizer, messages: list[dict], encdec: bool) -> dict:
        """One conversation -> {input_ids, labels, prompt_ids} (causal: masked sequence; seq2seq: pair)."""
        template, eos = TEMPLATES.get(cfg.data.template), tokenizer.eos_token_id
        if not encdec:
            enc = encode(template.render(messages, tokenizer), tokenizer, eos, cfg.data.train_on_prompt)
            return {"input_ids": enc.input_ids, "labels": enc.labels, "prompt_ids": enc.input_ids[: enc.prompt_len]}
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt_text = "".join(s.text for s in template.render(messages[:last], tokenizer, generation=True))
        prompt_ids = list(tokenizer(prompt_text).input_ids)
        labels = list(tokenizer(text_target=messages[last]["content"]).input_ids)
        if not labels or labels[-1] != eos:
            labels.append(eos)
        return {"input_ids": prompt_ids, "labels": labels, "prompt_ids": prompt_ids}

    def prepare(self, cfg, tokenizer, data: GenData) -> Prepared:
        from ...zoo import resolve

        config = _lm_config(resolve(cfg.model.backbone).path)
        encdec = bool(getattr(config, "is_encoder_decoder", False))
        context = getattr(config, "max_position_embeddings", None)
        max_len, budget = cfg.model.max_length, cfg.data.generate.max_new_tokens
        splits, lengths, dropped = {}, {}, {}
        know = kn.task_knowledge(cfg, data.splits)
        for name, rows in data.splits.items():
            items = []
            passages = kn.passages_for(cfg, know, tokenizer, rows)[0] if know else [[] for _ in rows]
            for index, row in enumerate(rows):
                messages = kn.with_knowledge(to_messages(row, cfg.data.prompt, cfg.data.system), passages[index])
                item = self._encode(cfg, tokenizer, messages, encdec)
                size = max(len(item["input_ids"]), len(item["labels"])) if encdec else len(item["input_ids"])
                reason = f"{size} tokens, over model.max_length={max_len}" if size > max_len else None
                if name != "train" and context and len(item["prompt_ids"]) + budget > context:
                    reason = f"prompt of {len(item['prompt_ids'])} tokens + max_new_tokens {budget} exceeds the context of {context}"
                if reason:
                    if cfg.data.overlong == "error":
                        raise UserError(f"sample is too long: {reason}", where=row["source"],
                                        expected="a shorter sample, a larger model.max_length, or data.overlong: drop (counted)")
                    dropped[name] = dropped.get(name, 0) + 1
                    continue
                source, reference = last_turns(row)
                items.append({**item, "reference": reference, "source_text": source, "knowledge": passages[index]})
            if not items:
                raise UserError(f"every sample of split '{name}' is over model.max_length={max_len}", where="model.max_length")
            splits[name], lengths[name] = items, [len(it["input_ids"]) + (len(it["labels"]) if encdec else 0) for it in items]
        data.stats["dropped_overlong"] = {k: dropped.get(k, 0) for k in data.splits}
        if any(dropped.values()):
            print(f"[mmsft] dropped over-long samples (data.overlong: drop): {data.stats['dropped_overlong']}")
        pad = tokenizer.pad_token_id
        return Prepared(splits, Seq2SeqCollator(pad) if encdec else CausalCollator(pad), lengths)

    # -- evaluation and prediction -----------------------------------------------------------------
    def _generate(self, cfg, model, tokenizer, prompts: list[list[int]], desc: str):
        gens = model.generate(tokenizer, prompts, cfg.data.generate, desc=desc)
        texts = [g.text.split("\n")[0].strip() if cfg.data.generate.single_line else g.text for g in gens]
        return gens, texts

    @torch.no_grad()
    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ...metrics import compute
        from ...training.batching import iterate_eval

        head = single_head(cfg)
        model.eval()
        device = next(model.parameters()).device
        loss_sum, tokens = 0.0, 0
        for batch, _ in iterate_eval(prepared, split, cfg.train.eval_batch_size, device):
            out = model(**batch, heads=[head])
            n = int(out["heads"][head]["tokens"])
            loss_sum, tokens = loss_sum + float(out["loss"]) * n, tokens + n
        items = prepared.splits[split]
        gens, preds = self._generate(cfg, model, processor, [it["prompt_ids"] for it in items], f"generate {split}")
        refs = [it["reference"] for it in items]
        stopped = [g.stopped_by_eos for g in gens]
        names = list(dict.fromkeys([*self.head_metrics(cfg, head), "eos_rate", *(kn.GROUNDEDNESS if cfg.knowledge else ())]))
        knowledge = [it.get("knowledge", []) for it in items]
        metrics = compute(names, predictions=preds, references=refs, stopped_by_eos=stopped, knowledge=knowledge,
                          sources=[it["source_text"] for it in items], language=cfg.data.target_lang)  # BLEU's tokeniser
        metrics["loss"] = loss_sum / max(tokens, 1)
        metrics["mean_new_tokens"] = sum(len(g.token_ids) for g in gens) / max(len(gens), 1)
        return EvalOutput(metrics, preds, refs, {"sources": [it["source_text"] for it in items], "stopped_by_eos": stopped,
                                                 "knowledge": knowledge})

    def predict(self, cfg, model, tokenizer, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        encdec = model.backbone.encoder_decoder
        template = TEMPLATES.get(cfg.data.template)
        context = model.backbone.context_length(tokenizer)
        prompts, rows = [], [parse_input(text, i, cfg.data) for i, text in enumerate(inputs)]
        know = kn.task_knowledge(cfg, self.load_data(cfg).splits) if cfg.knowledge else None
        passages, hits = kn.passages_for(cfg, know, tokenizer, rows, cache=False) if know else ([[] for _ in rows], [])
        for i, row in enumerate(rows):
            messages = kn.with_knowledge(to_messages(row, cfg.data.prompt, cfg.data.system), passages[i])
            segments = template.render(messages, tokenizer, generation=True)
            if encdec:
                ids = list(tokenizer("".join(s.text for s in segments)).input_ids)
            else:
                ids = sum((tokenize(tokenizer, s.text) for s in segments), [])
            if context and len(ids) + cfg.data.generate.max_new_tokens > context:
                raise UserError(f"prompt of {len(ids)} tokens + max_new_tokens {cfg.data.generate.max_new_tokens} exceeds the "
                                f"model's context of {context}", where=f"input {i + 1}", expected="a shorter input")
            prompts.append(ids)
        model.eval()
        gens, texts = self._generate(cfg, model, tokenizer, prompts, "generate")
        out = [{"input": text, "output": reply, "stopped_by_eos": g.stopped_by_eos, "new_tokens": len(g.token_ids)}
               for text, reply, g in zip(inputs, texts, gens)]
        for row, found in zip(out, hits):
            row["knowledge"] = know.shown(found)
        return out

    # -- reporting ---------------------------------------------------------------------------------
    def data_summary(self, data: GenData) -> dict:
        return {**{k: len(v) for k, v in data.splits.items()}, **({"dropped_overlong": data.stats["dropped_overlong"]} if "dropped_overlong" in data.stats else {})}

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        """Settings, an examples table, and every test output in ``test_predictions.jsonl``."""
        from ...knowledge.inject import report_lines

        g = cfg.data.generate
        with (run_dir / "test_predictions.jsonl").open("w") as fh:
            knowledge = test.extra.get("knowledge") or [[] for _ in test.predictions]
            for src, ref, pred, stop, passages in zip(test.extra["sources"], test.references, test.predictions, test.extra["stopped_by_eos"], knowledge):
                record = {"source": src, "reference": ref, "prediction": pred, "stopped_by_eos": stop}
                fh.write(json.dumps({**record, **({"knowledge": passages} if cfg.knowledge else {})}, ensure_ascii=False) + "\n")
        n = len(test.predictions)
        picks = sorted({round(i * (n - 1) / 4) for i in range(5)}) if n > 1 else list(range(n))
        rows = [f"| {_md(test.extra['sources'][i])} | {_md(test.references[i])} | {_md(test.predictions[i])} | "
                f"{'yes' if test.extra['stopped_by_eos'][i] else 'no'} |" for i in picks]
        decoding = "greedy" if g.num_beams == 1 else f"beam search ({g.num_beams} beams)"
        return [
            "## Generation (test)\n",
            f"- Template `{cfg.data.template}`, prompt `{_md(cfg.data.prompt)}`, special tokens {'added' if cfg.data.special_tokens else 'off'}, "
            f"loss on {'prompt and target' if cfg.data.train_on_prompt else 'target tokens only'}",
            f"- Decoding: {decoding}, max_new_tokens {g.max_new_tokens}, left-padded batches of {g.batch_size}"
            + (", first line kept" if g.single_line else ""),
            f"- EOS rate {test.metrics.get('eos_rate', 0):.3f}, mean new tokens {test.metrics.get('mean_new_tokens', 0):.1f}, "
            f"test loss {test.metrics.get('loss', float('nan')):.4f}",
            f"- Over-long samples dropped: {(data.stats.get('dropped_overlong') if data is not None else None) or 'none'}; "
            "all test outputs: `test_predictions.jsonl`\n",
            "### Example outputs\n",
            "| source | reference | prediction | stopped by EOS |",
            "|---|---|---|---|",
            *rows,
            "",
            *report_lines(cfg),
        ]

    qc_view = staticmethod(qc.view)
    write_fixed = staticmethod(qc.write_fixed)
