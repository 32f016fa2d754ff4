"""Synthesis through a language model: paraphrase and back-translation of text rows.

Both make same-label rows from train rows, a batch at a time (``transform_many``), with sampling
seeded from the augmentation seed.  ``model`` is a zoo name (``mmsft models list``) or a local Hugging
Face causal-LM / seq2seq folder.  A generated text is kept only when it passes cheap checks against
its source: not a copy, a length within the ratio bounds and, by default, the same numbers (an LM
that turns "rose 5 %" into "rose 50 %" must not silently flip a finance label).

Quality follows the model: SmolLM2-135M-Instruct (the default paraphraser) rewrites English sentences
well; a 270M base model back-translates roughly, and a real translation folder (Marian, T5, ...) passed
as ``model`` / ``back_model`` does it better.  See ``benchmarks/augmentation.py`` for what pays.
"""
from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from typing import Literal, Optional

from ..errors import UserError
from ..generation.generate import GenerateOptions, generate
from .base import AugmentMethod, normalise, register_method
from .text import NUMBER, TEXT_KINDS

# one-shot examples for back-translation prompts on base LMs (languages of the shared Multi30K data + Spanish)
EXAMPLES = {
    "English": "The shop opens at nine o'clock every morning.",
    "German": "Der Laden öffnet jeden Morgen um neun Uhr.",
    "French": "Le magasin ouvre à neuf heures tous les matins.",
    "Czech": "Obchod otevírá každé ráno v devět hodin.",
    "Spanish": "La tienda abre a las nueve todas las mañanas.",
}
ANSWER_PREFIX = re.compile(r"^\s*(?:sure[,!.]?\s*)?(?:here(?: is|'s) [^:\n]*:|paraphrase[d]?(?: sentence)?:|rewritten(?: sentence)?:)\s*", re.I)


@functools.lru_cache(maxsize=2)
def load_generator(name: str):
    """(model, tokenizer) in eval mode, loaded once per process per name."""
    import torch

    from ..generation.backbone import load_lm

    model, tokenizer, _ = load_lm(name)
    model.eval()
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return model, tokenizer


@dataclass
class LMOptions(GenerateOptions):
    """Decoding (sampled, one line per answer) plus the quality checks paraphrase and back-translation share."""

    temperature: float = 0.7  # 0 = greedy (the same output every time)
    top_p: float = 0.9
    stop_at_newline: bool = True
    keep_numbers: bool = True  # drop outputs whose numbers differ from the source's
    min_length_ratio: float = 0.5  # output words / source words
    max_length_ratio: float = 2.0
    min_word_overlap: float = 0.0  # share of the source's content words the output keeps; 0 = no check

    def validate(self, path: str) -> None:
        super().validate(path)
        if not 0 < self.min_length_ratio < self.max_length_ratio:
            raise UserError("need 0 < min_length_ratio < max_length_ratio", where=path, expected="e.g. 0.5 and 2.0")
        if not 0 <= self.min_word_overlap <= 1:
            raise UserError(f"min_word_overlap must be in [0, 1], got {self.min_word_overlap}", where=f"{path}.min_word_overlap",
                            expected="e.g. 0.3 (0 = no check)")


def prompt_ids(tokenizer, model, text: str, template: str) -> list[int]:
    """Token ids of one prompt: the tokenizer's chat template, or the text with the specials the tokenizer adds itself."""
    from ..generation.encoding import tokenize

    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has_chat:
        raise UserError("this model's tokenizer has no chat template", where="template", expected="plain or auto")
    if not model.config.is_encoder_decoder and (template == "chat" or (template == "auto" and has_chat)):
        return tokenize(tokenizer, tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                                 add_generation_prompt=True))
    return list(tokenizer(text).input_ids)


def run_lm(name: str, prompts: list[str], options: LMOptions, template: str, rng: random.Random, desc: str) -> list[str]:
    """First non-empty line of each generated answer, with a leading "Here is ...:" style preamble removed."""
    import torch

    model, tokenizer = load_generator(name)
    ids = [prompt_ids(tokenizer, model, p, template) for p in prompts]
    torch.manual_seed(rng.randrange(2**31))
    outputs = []
    for gen in generate(model, tokenizer, ids, options, desc=desc):
        lines = [line.strip() for line in gen.text.splitlines() if line.strip()]
        outputs.append(ANSWER_PREFIX.sub("", lines[0]).strip().strip('"') if lines else "")
    return outputs


def numbers(text: str) -> list[str]:
    return sorted(n.replace(",", "") for n in NUMBER.findall(text))


STOPWORDS = frozenset("the and for with from that this there these those are was were has have had its his her their "
                      "will would said also which been into than but not our your they them".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{3,}", text.lower()) if w not in STOPWORDS}


def word_overlap(source: str, output: str) -> float:
    """Share of the source's content words (3+ letters, no stopwords) found in the output."""
    words = content_words(source)
    return len(words & content_words(output)) / len(words) if words else 1.0


def acceptable(source: str, output: str, options: LMOptions) -> bool:
    """Not empty, not a copy, length in bounds, same numbers (when asked), not drifted to another meaning."""
    if not output or normalise(output) == normalise(source):
        return False
    ratio = len(output.split()) / max(1, len(source.split()))
    if not options.min_length_ratio <= ratio <= options.max_length_ratio:
        return False
    if options.min_word_overlap and word_overlap(source, output) < options.min_word_overlap:
        return False
    return not options.keep_numbers or numbers(output) == numbers(source)


def _check_name(name: Optional[str], path: str) -> None:
    if name is not None and not name.strip():
        raise UserError("model must be a zoo name or a local folder", where=path, expected="e.g. smollm2-135m")


@dataclass
class ParaphraseOptions(LMOptions):
    model: str = "smollm2-135m"
    prompt: str = "Rewrite this sentence in different words, keeping all facts and numbers:\n{text}"
    template: Literal["auto", "chat", "plain"] = "auto"  # auto: the tokenizer's chat template when it has one

    def validate(self, path: str) -> None:
        super().validate(path)
        _check_name(self.model, f"{path}.model")
        if "{text}" not in self.prompt:
            raise UserError("prompt has no {text} placeholder", where=f"{path}.prompt", expected="e.g. 'Paraphrase: {text}'")


@register_method
class Paraphrase(AugmentMethod):
    name, kinds, Options = "paraphrase", TEXT_KINDS, ParaphraseOptions
    description = "synthesis: the row rewritten by a zoo LM (default smollm2-135m), numbers kept"

    def transform_many(self, rows, ctx, options, rng):
        outputs = run_lm(options.model, [options.prompt.replace("{text}", r["text"]) for r in rows], options,
                         options.template, rng, "paraphrase")
        return [{"text": out, "label": r["label"]} if acceptable(r["text"], out, options) else None
                for r, out in zip(rows, outputs)]


@dataclass
class BackTranslationOptions(LMOptions):
    model: str = "gemma3-270m"  # multilingual; source -> pivot
    back_model: Optional[str] = None  # pivot -> source (default: model)
    source_language: str = "English"
    pivot_language: str = "German"
    prompt: str = "{from}: {text}\n{to}:"  # for causal LMs; a one-shot example goes first when EXAMPLES has both languages
    template: Literal["auto", "chat", "plain"] = "plain"
    # a 270M model's round trip often drifts ("no substitutes to AC drives" -> "the car has no spare parts")
    # or echoes the one-shot example; an output must keep 30% of the source's content words
    min_word_overlap: float = 0.3

    def validate(self, path: str) -> None:
        super().validate(path)
        _check_name(self.model, f"{path}.model")
        _check_name(self.back_model, f"{path}.back_model")
        if "{text}" not in self.prompt:
            raise UserError("prompt has no {text} placeholder", where=f"{path}.prompt", expected="e.g. '{from}: {text}\\n{to}:'")
        if self.source_language == self.pivot_language:
            raise UserError("pivot_language equals source_language", where=f"{path}.pivot_language", expected="another language")


def translation_prompt(text: str, src: str, dst: str, fmt: str) -> str:
    fill = lambda t: fmt.replace("{from}", src).replace("{to}", dst).replace("{text}", t)  # noqa: E731
    shot = f"{fill(EXAMPLES[src])} {EXAMPLES[dst]}\n\n" if src in EXAMPLES and dst in EXAMPLES else ""
    return shot + fill(text)


@register_method
class BackTranslation(AugmentMethod):
    name, kinds, Options = "back_translation", TEXT_KINDS, BackTranslationOptions
    description = "synthesis: translate to a pivot language and back through zoo LMs (default gemma3-270m)"

    def transform_many(self, rows, ctx, options, rng):
        src, pivot = options.source_language, options.pivot_language
        there = run_lm(options.model, [translation_prompt(r["text"], src, pivot, options.prompt) for r in rows],
                       options, options.template, rng, f"translate to {pivot}")
        keep = [i for i, (r, t) in enumerate(zip(rows, there)) if t and normalise(t) != normalise(r["text"])]  # a copy is no translation
        if not keep:
            return [None] * len(rows)
        back = run_lm(options.back_model or options.model, [translation_prompt(there[i], pivot, src, options.prompt) for i in keep],
                      options, options.template, rng, f"translate to {src}")
        out: list[Optional[dict]] = [None] * len(rows)
        for i, text in zip(keep, back):
            if acceptable(rows[i]["text"], text, options):
                out[i] = {"text": text, "label": rows[i]["label"]}
        return out
