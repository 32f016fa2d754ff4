"""Prompt templates: a conversation -> prompt and target segments, one registry entry per style.

A conversation is a list of ``{"role": system|knowledge|user|assistant, "content": str}``.  A
template returns ``Segment``s; ``target=True`` marks an assistant turn's content, which carries the
loss and is closed by EOS at encoding time.  With ``generation=True`` the conversation ends on a
non-assistant turn and the template appends whatever opens the assistant's answer, so the tokens a
model is prompted with at inference are exactly the tokens it saw before each target in training.

* ``plain``: turns joined by newlines, no role markers (fits base models such as Gemma-3-270M).
* ``role``: ``<|system|>``/``<|user|>``/``<|knowledge|>``/``<|assistant|>`` special tokens.
* ``chat``: the tokenizer's own chat template (SmolLM2's ChatML); the assistant part is found by
  rendering each prefix of the conversation, so any prefix-stable template works.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..registry import Registry
from .tokens import SPECIAL_TOKENS

ROLES = ("system", "knowledge", "user", "assistant")


@dataclass(frozen=True)
class Segment:
    text: str
    target: bool = False  # assistant content: loss here, EOS appended


class Template:
    name = ""
    needs_special_tokens = False

    def check(self, tokenizer) -> None:
        """Raise UserError when this template cannot work with ``tokenizer``."""

    def render(self, messages: list[dict], tokenizer, generation: bool = False) -> list[Segment]:
        raise NotImplementedError


TEMPLATES: Registry[Template] = Registry("prompt template")


def register_template(cls: type) -> type:
    TEMPLATES.add(cls.name, cls())
    return cls


def bos_segment(tokenizer) -> list[Segment]:
    """The BOS the tokenizer would add on its own (Gemma adds one, SmolLM2 does not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    ids = tokenizer("a").input_ids
    return [Segment(tokenizer.bos_token)] if ids and ids[0] == bos else []


def merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring prompt segments (one tokenizer call, natural merges across them)."""
    out: list[Segment] = []
    for seg in segments:
        if out and not seg.target and not out[-1].target:
            out[-1] = Segment(out[-1].text + seg.text)
        elif seg.text or seg.target:
            out.append(seg)
    return out


@register_template
class Plain(Template):
    name = "plain"

    def render(self, messages, tokenizer, generation=False):
        segs = bos_segment(tokenizer)
        for m in messages:
            if m["role"] == "assistant":
                segs.append(Segment(m["content"], target=True))
            else:
                segs.append(Segment(m["content"] + ("\n\n" if m["role"] == "system" else "\n")))
        return merge(segs)


@register_template
class RoleTokens(Template):
    name = "role"
    needs_special_tokens = True

    def check(self, tokenizer):
        vocab = tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
        if missing:
            raise UserError(f"template 'role' needs the special tokens {missing} in the tokenizer", where="data.template",
                            expected="data.special_tokens: true, or template plain/chat")

    def render(self, messages, tokenizer, generation=False):
        segs = bos_segment(tokenizer)
        for m in messages:
            if m["role"] == "assistant":
                segs += [Segment(SPECIAL_TOKENS["assistant"]), Segment(m["content"], target=True)]
            else:
                segs.append(Segment(SPECIAL_TOKENS[m["role"]] + m["content"] + "\n"))
        if generation:
            segs.append(Segment(SPECIAL_TOKENS["assistant"]))
        return merge(segs)


@register_template
class ChatTemplate(Template):
    name = "chat"

    def check(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("this backbone's tokenizer has no chat template (e.g. Gemma-3-270M is a base model)",
                            where="data.template", expected="role or plain")

    @staticmethod
    def _apply(tokenizer, messages, generation):
        msgs = [{"role": "system" if m["role"] == "knowledge" else m["role"], "content": m["content"]} for m in messages]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)

    def render(self, messages, tokenizer, generation=False):
        self.check(tokenizer)
        eos = tokenizer.eos_token or ""
        segs, done = [], ""
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prefix = self._apply(tokenizer, messages[:k], True)
            full = self._apply(tokenizer, messages[: k + 1], False)
            if not prefix.startswith(done) or not full.startswith(prefix):
                raise UserError("the tokenizer's chat template is not prefix-stable (a longer conversation re-renders "
                                "earlier turns), so assistant turns cannot be located", where="data.template", expected="role or plain")
            part = full[len(prefix):]
            cut = part.find(eos, part.find(m["content"]) + len(m["content"])) if eos else -1
            target = part[: cut + len(eos)] if cut >= 0 else part.rstrip()
            segs += [Segment(prefix[len(done):]), Segment(target, target=True)]
            done = prefix + target
        if generation:
            segs.append(Segment(self._apply(tokenizer, messages, True)[len(done):]))
        return merge(segs)


def check_messages(messages: list[dict], where: str) -> None:
    """Roles known, contents non-empty text, at least one assistant turn."""
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise UserError(f"message {i + 1} has role {m.get('role')!r}", where=where, expected="one of: " + ", ".join(ROLES))
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise UserError(f"message {i + 1} ({m.get('role')}) is empty", where=where, expected="non-empty text")
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError("conversation has no assistant turn", where=where, expected="at least one assistant message (the target)")
