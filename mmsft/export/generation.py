"""Generation exports (``hf``): ``AutoModelForCausalLM`` + tokenizer + chat template + generation config.

Why a chat template of our own: mmsft renders a conversation with a prompt template (``data.template``:
``role``, ``chat`` or ``plain``), applies the task's prompt format to user turns (``data.prompt``, e.g.
``"Translate {source_language} to {target_language}: {source}"``) and may add a system turn
(``data.system``).  The export's ``chat_template`` (Jinja, in ``tokenizer_config.json``) does all of it,
so ``tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)``
gives the very token ids ``mmsft predict RUN text`` feeds the model.  Fields fixed by the task (the
language names of a ``parallel`` task) are filled in at export; a prompt naming per-row fields
(``{intent}``) cannot be, so the template then passes user turns through unchanged and ``export.json``
says which format to apply yourself (``prompt_format``).

``generation_config.json`` holds the run's decoding (``data.generate``: max_new_tokens, beams, penalties,
EOS / pad), so ``model.generate(**inputs)`` decodes as ``mmsft predict`` does; ``single_line`` tasks keep
the first line of the decoded text (mmsft does this after decoding).  LoRA / DoRA are merged and the
role tokens' embedding rows are part of the weights.  Before anything is written, greedy outputs of
the exported model on probe prompts are compared with the run's own.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from ..errors import UserError
from . import Exporter, register_exporter

PROBES = ["the cat sees the dog", "Where is my order?", "a man rides a bike down the street"]
SOURCE = "\x00source\x00"  # stands for the user text while the prompt format is split around it


def _literal(text: str) -> str:
    """``text`` as a Jinja string literal."""
    return json.dumps(text, ensure_ascii=False)


def fixed_fields(cfg) -> dict[str, str]:
    """Prompt fields every input of the task shares (``parse_input``'s own): the language names of a parallel task."""
    from ..kinds.generation.readers import LANGUAGES

    spec = cfg.data
    if spec.format != "parallel":
        return {}
    return {"source_language": LANGUAGES.get(spec.source_lang, spec.source_lang),
            "target_language": LANGUAGES.get(spec.target_lang, spec.target_lang)}


def prompt_parts(cfg):
    """(the prompt format split around the user text, the system text or None, fields left unfilled)."""
    fields = fixed_fields(cfg)
    names = {n for text in (cfg.data.prompt, cfg.data.system or "") for _, n, _, _ in string.Formatter().parse(text) if n}
    open_fields = sorted(names - set(fields) - {"source"})
    if open_fields:
        return None, None, open_fields
    parts = cfg.data.prompt.format_map({**fields, "source": SOURCE}).split(SOURCE)
    system = cfg.data.system.format_map({**fields, "source": ""}) if cfg.data.system else None
    return parts, system, []


def chat_template(cfg, tokenizer) -> tuple[str, list[str]]:
    """(the Jinja chat template reproducing the run's prompts, fields the caller must fill)."""
    from ..generation.templates import bos_segment
    from ..generation.tokens import SPECIAL_TOKENS

    parts, system, open_fields = prompt_parts(cfg)
    content = ("(" + "[" + ", ".join(_literal(p) for p in parts) + "]|join(m['content'])" + ")") if parts else "m['content']"
    pre = "{%- set ns = namespace(m=[]) -%}"
    if system:
        pre += ("{%- if messages|length == 0 or messages[0]['role'] != 'system' -%}"
                "{%- set ns.m = ns.m + [{'role': 'system', 'content': " + _literal(system) + "}] -%}{%- endif -%}")
    template = cfg.data.template
    knowledge_role = "'system'" if template == "chat" else "m['role']"
    pre += ("{%- for m in messages -%}{%- set ns.m = ns.m + [{'role': " + knowledge_role + " if m['role'] == 'knowledge' else m['role'], "
            "'content': " + content + " if m['role'] == 'user' else m['content']}] -%}{%- endfor -%}")
    if template == "chat":
        own = tokenizer.chat_template
        if not own:
            raise UserError("the run's tokenizer has no chat template to export", where="data.template")
        return pre + "{%- set messages = ns.m -%}" + own, open_fields
    bos = "".join(s.text for s in bos_segment(tokenizer))
    body = "{{- " + _literal(bos) + " -}}" if bos else ""
    if template == "role":
        roles = {r: _literal(t) for r, t in SPECIAL_TOKENS.items()}
        body += ("{%- for m in ns.m -%}{%- if m['role'] == 'assistant' -%}{{- " + roles["assistant"] + " + m['content'] + eos_token -}}"
                 "{%- else -%}{{- {'system': " + roles["system"] + ", 'user': " + roles["user"] + ", 'knowledge': " + roles["knowledge"]
                 + "}[m['role']] + m['content'] + " + _literal("\n") + " -}}{%- endif -%}{%- endfor -%}"
                 "{%- if add_generation_prompt -%}{{- " + roles["assistant"] + " -}}{%- endif -%}")
    elif template == "plain":
        body += ("{%- for m in ns.m -%}{%- if m['role'] == 'assistant' -%}{{- m['content'] + eos_token -}}"
                 "{%- elif m['role'] == 'system' -%}{{- m['content'] + " + _literal("\n\n") + " -}}"
                 "{%- else -%}{{- m['content'] + " + _literal("\n") + " -}}{%- endif -%}{%- endfor -%}")
    else:
        raise UserError(f"template '{template}' has no chat-template export", where="data.template", expected="role, chat or plain")
    return pre + body, open_fields


def generation_config(lm, cfg, tokenizer):
    from ..generation.generate import _config

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return _config(lm, cfg.data.generate, eos, pad)


@torch.no_grad()
def decode(lm, tokenizer, config, ids: list[int]) -> str:
    """The text a plain transformers user gets for prompt ``ids`` (new tokens up to EOS, special tokens dropped)."""
    out = lm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                      generation_config=config)[0, len(ids):].tolist()
    if config.eos_token_id in out:
        out = out[: out.index(config.eos_token_id)]
    return tokenizer.decode(out, skip_special_tokens=True).strip()


@register_exporter
class GenerationExporter(Exporter):
    kind = "generation"
    formats = ("hf",)

    def write(self, session, fmt: str, folder: Path) -> dict:
        cfg, model, tokenizer = session.cfg, session.model, session.processor
        lm = model.backbone.model
        if getattr(lm.config, "is_encoder_decoder", False):
            raise UserError("export --format hf covers causal LMs; this run's backbone is an encoder-decoder",
                            where=cfg.model.backbone, expected="a causal LM run (SmolLM2, Gemma), or `mmsft merge-adapters` for a plain copy")
        template, open_fields = chat_template(cfg, tokenizer)
        config = generation_config(lm, cfg, tokenizer)
        probes = [json.dumps({"source": p, **{f: "general" for f in open_fields}}) if open_fields else p for p in PROBES]
        # the run's own outputs first: template 'chat' renders with the tokenizer's own chat template, which the
        # export's (prompt format and system turn included) replaces only after
        ours = [session.kind.predict(cfg, model, tokenizer, [p])[0] for p in probes]  # one at a time: no padding
        tokenizer.chat_template = template
        mismatches = []
        for probe, row in zip(PROBES, ours):
            if open_fields:
                break  # the prompt needs per-row fields the template cannot know: the caller formats them
            ids = tokenizer.apply_chat_template([{"role": "user", "content": probe}], add_generation_prompt=True, tokenize=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
            text = decode(lm, tokenizer, config, ids)
            text = text.split("\n")[0].strip() if cfg.data.generate.single_line else text
            if text != row["output"]:
                mismatches.append({"input": probe, "mmsft": row["output"], "export": text})
        if mismatches:
            raise UserError(f"the exported model decodes differently from the run ({mismatches[0]})", where="export --format hf")
        lm.generation_config = config
        lm.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(_card(cfg, open_fields))
        return {"loads_with": "transformers.AutoModelForCausalLM + AutoTokenizer (apply_chat_template)",
                "template": cfg.data.template, "prompt_format": cfg.data.prompt if open_fields else None,
                "prompt_fields_to_fill": open_fields, "single_line": cfg.data.generate.single_line,
                "probes_compared": 0 if open_fields else len(PROBES), "generation": json.loads(config.to_json_string())}


def _card(cfg, open_fields: list[str]) -> str:
    user = (f"your text formatted as `{cfg.data.prompt}`" if open_fields else "your text (the task's prompt format is applied by the template)")
    return (f"---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [mmsft, {cfg.name}]\n---\n\n"
            f"# {cfg.name} ({cfg.adapter_label}), exported by mmsft\n\n"
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(FOLDER)\nmodel = AutoModelForCausalLM.from_pretrained(FOLDER)\n"
            "ids = tok.apply_chat_template([{'role': 'user', 'content': TEXT}], add_generation_prompt=True, return_tensors='pt', return_dict=True)\n"
            "out = model.generate(**ids)  # decoding from generation_config.json\n"
            "print(tok.decode(out[0, ids['input_ids'].shape[1]:], skip_special_tokens=True).strip())\n```\n\n"
            f"- User turn: {user}\n- Template: `{cfg.data.template}`"
            + ("; keep the first line of the output (the task is one-line)" if cfg.data.generate.single_line else "") + "\n")
