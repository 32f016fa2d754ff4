"""The registered domain-adaptation methods: ``source_only``, ``target_mlm``, ``dann``.

Each is a recipe over the existing seams: ``source_only`` is the plain fine-tune; ``target_mlm`` runs
its MLM stage (``mlm.py``) and fine-tunes on the adapted backbone folder; ``dann`` swaps the objective
for the ``dann`` objective (``dann.py``) pointed at the target's unlabelled texts.  The runner, the
kinds and the pipeline are unchanged.
"""
from __future__ import annotations

import hashlib
import json

from ..config import to_dict
from ..errors import UserError
from ..registry import KINDS
from .base import Method, MethodContext, once, register_method
from .dann import DannOptions
from .mlm import MlmOptions, continue_mlm
from .texts import read_texts


def file_digest(path) -> str:
    return hashlib.sha1(open(path, "rb").read()).hexdigest()[:16]


@register_method
class SourceOnly(Method):
    name = "source_only"
    needs_target = False
    description = "the baseline: fine-tune on the source's labelled train split, nothing from the target"


def _backbone_pins(cfg) -> list[str]:
    """Overrides that keep a zoo backbone's own settings when the fine-tune loads an adapted copy of it
    from a folder (a folder has no zoo entry): the head's pooling and LoRA's target modules."""
    from ..zoo import ZOO

    if cfg.model.backbone not in ZOO:
        return []  # already a folder: the copy resolves exactly like the original
    entry, pins = ZOO.get(cfg.model.backbone), []
    for name, head in cfg.model.heads.items():
        if getattr(head.options, "pooling", None) == "auto" and entry.family == "text_encoder":
            pins.append(f"model.heads.{name}.options.pooling={entry.pooling}")
    for name, spec in cfg.adapters.items():
        if spec.method == "lora" and spec.options.target_modules == "auto" and entry.lora_targets:
            pins.append(f"adapters.{name}.options.target_modules={json.dumps(list(entry.lora_targets))}")
    return pins


@register_method
class TargetMlm(Method):
    name = "target_mlm"
    Options = MlmOptions
    description = "continued masked-LM training of the backbone on source + target train texts, then the task fine-tune (DAPT / UDALM's MLM)"

    def check(self, cfg, options: MlmOptions) -> None:
        if KINDS.get(cfg.kind).backbone_family != "text":
            raise UserError(f"target_mlm continues a text encoder's masked-LM training; task kind '{cfg.kind}' has none",
                            where="methods", expected="text classification tasks")

    def _max_length(self, ctx: MethodContext) -> int:
        return ctx.options.max_length or ctx.cfg.model.max_length

    def _domains(self, ctx: MethodContext) -> list[tuple[str, object]]:
        """The two domains' (task, texts file) in name order: the MLM corpus is their union whichever
        is the source, so A -> B and B -> A share one stage (half the MLM cost of a square matrix)."""
        return sorted([(ctx.source, ctx.texts["source"]), (ctx.target, ctx.texts["target"])], key=lambda d: d[0])

    def stage_name(self, ctx: MethodContext) -> str:
        return "+".join(task for task, _ in self._domains(ctx))

    def stage_key(self, ctx: MethodContext) -> dict:
        options = {k: v for k, v in to_dict(ctx.options).items() if k != "per_seed"}
        return {"backbone": ctx.cfg.model.backbone, "options": options, "max_length": self._max_length(ctx),
                "seed": ctx.seed if ctx.options.per_seed else 0, "texts": [file_digest(path) for _, path in self._domains(ctx)]}

    def overrides(self, ctx: MethodContext) -> list[str]:
        return [f"model.backbone={ctx.stage_dir}", *_backbone_pins(ctx.cfg)]

    def run_stage(self, ctx: MethodContext) -> float:
        folder = ctx.stage_dir

        def build() -> None:
            texts = [t for _, path in self._domains(ctx) for t in read_texts(path, ctx.options.max_texts)]
            continue_mlm(ctx.cfg.model.backbone, texts, folder, ctx.options, self._max_length(ctx),
                         ctx.seed if ctx.options.per_seed else 0, ctx.threads)

        return once(folder, lambda: (folder / "mlm.json").is_file(), build)


def _trains_backbone(cfg) -> bool:
    for spec in cfg.adapters.values():
        o = spec.options
        if spec.method != "frozen" or o.train_top_layers or o.train_modules or o.train_norms:
            return True
    return False


@register_method
class DannMethod(Method):
    name = "dann"
    Options = DannOptions
    description = "a domain classifier behind a gradient-reversal layer on the pooled features, trained with the task (Ganin's lambda schedule)"

    def parse_options(self, raw, path: str) -> DannOptions:
        options = super().parse_options(raw, path)
        if options.target_texts is not None:
            raise UserError("target_texts is set by the benchmark for each pair", where=f"{path}.target_texts")
        return options

    def check(self, cfg, options: DannOptions) -> None:
        if not _trains_backbone(cfg):
            raise UserError(f"dann needs an adapter that trains the backbone; with '{cfg.adapter_label}' the reversed gradient has nothing to change",
                            where="adapters", expected="lora, full or frozen_top2")

    def overrides(self, ctx: MethodContext) -> list[str]:
        o = ctx.options
        objective = {"name": "dann", **to_dict(o), "target_texts": str(ctx.texts["target"]), "tokenizer": o.tokenizer or ctx.cfg.model.backbone,
                     "max_length": o.max_length or ctx.cfg.model.max_length, "seed": ctx.seed}
        return [f"objective={json.dumps(objective)}"]
