"""The ``distill`` objective: the student's label loss mixed with what a frozen teacher run says.

    loss = (1 − α) · L_labels + α · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + β · L_hidden

(Hinton et al. 2015: the T² keeps the soft term's gradients on the label term's scale as T
changes).  For classification heads z are the class logits; for an ``lm`` head they are the
next-token logits of every target token (token-level KD, which needs one vocabulary: the batch's
token ids are fed to the teacher as they are).  ``L_hidden`` is the mean squared error between
student block j -- through the ``distill_projection`` module when widths differ -- and teacher
block m(j) (uniform map), over real tokens.

The teacher is a saved run, loaded on the first batch, kept in eval mode without gradients.  Its
logits are a function of the sample, so with ``cache: true`` (and no hidden-state term, whose
states are too large to keep) they are computed once per training sample and memoised by the
sample's token ids -- a sample that changes (on-the-fly augmentation) is simply a new key.
With α = 0 and β = 0 the teacher is never loaded: the objective is the plain label loss.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models.heads import head_logits
from ..registry import OBJECTIVES
from ..training.objectives import Objective

IGNORE = -100


@dataclass
class DistillOptions:
    teacher: str  # the teacher's run folder
    alpha: float = 0.5  # weight of the soft-target term; 1 − alpha goes to the label loss
    temperature: float = 2.0
    hidden_weight: float = 0.0  # β: weight of hidden-state KD (0 = off)
    hidden_layers: list[int] = field(default_factory=list)  # student blocks matched to the teacher's (default: all)
    cache: bool = True  # memoise the teacher's logits per training sample (off: run the teacher every step)

    def validate(self, path: str) -> None:
        if not 0 <= self.alpha <= 1:
            raise UserError(f"alpha must be in [0, 1], got {self.alpha}", where=f"{path}.alpha")
        if not self.temperature > 0:
            raise UserError(f"temperature must be > 0, got {self.temperature}", where=f"{path}.temperature")
        if self.hidden_weight < 0:
            raise UserError(f"hidden_weight must be >= 0, got {self.hidden_weight}", where=f"{path}.hidden_weight")
        if not str(self.teacher).strip():
            raise UserError("the teacher run folder is required", where=f"{path}.teacher")


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """T² · KL(p_teacher ‖ p_student) at temperature T, averaged over rows (``mask``: rows that count)."""
    s = F.log_softmax(student.float() / temperature, -1)
    t = F.log_softmax(teacher.float() / temperature, -1)
    kl = (t.exp() * (t - s)).sum(-1)
    if mask is not None:
        kl = kl[mask]
    return temperature ** 2 * (kl.mean() if kl.numel() else kl.sum())


def lm_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits predicting target tokens, mask) with the lm head's alignment: logits of positions
    start.. predict the tokens at start+1.. (left-padded causal batches)."""
    start = labels.shape[1] - logits.shape[1]
    shifted = labels[:, start + 1:]
    return logits[:, :-1], shifted != IGNORE


@contextlib.contextmanager
def captured(blocks, indices: list[int]):
    """{index: output} of the given blocks during the ``with`` body (forward hooks)."""
    out, handles = {}, []
    for i in indices:
        def hook(_module, _args, output, i=i):
            out[i] = output[0] if isinstance(output, tuple) else output
        handles.append(blocks[i].register_forward_hook(hook))
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()


def _core(model):
    return getattr(model, "module", model)  # DDP / accelerate wrappers


@OBJECTIVES.register("distill")
class Distill(Objective):
    Options = DistillOptions

    def __init__(self, options: DistillOptions):
        super().__init__(options)
        self.teacher = None
        self.cache: dict[bytes, torch.Tensor] = {}
        self.cache_hits = self.cache_misses = 0

    # -- the teacher --------------------------------------------------------------------------------
    @property
    def needs_teacher(self) -> bool:
        return self.options.alpha > 0 or self.options.hidden_weight > 0

    def _load_teacher(self, device):
        from pathlib import Path

        from ..pipeline import load_run

        if not (Path(self.options.teacher) / "config.yaml").is_file():
            raise UserError("the teacher is not a run folder", where=f"objective.teacher: {self.options.teacher}")
        session = load_run(self.options.teacher)
        teacher = session.model.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _layer_map(self, student) -> tuple[list[int], list[int]]:
        from ..compress.structure import uniform_layer_map

        n_s, n_t = len(student.backbone.blocks()), len(self.teacher.backbone.blocks())
        mapping = uniform_layer_map(n_s, n_t)
        layers = [student.backbone.block_index(i) for i in (self.options.hidden_layers or range(n_s))]
        return layers, [mapping[j] for j in layers]

    # -- the loss -----------------------------------------------------------------------------------
    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        core = _core(model)
        opts = self.options
        if not self.needs_teacher:
            out = model(**batch)
            return out["loss"], {}
        if "input_ids" not in batch:
            raise UserError("distillation feeds the student's token batches to the teacher, but this batch holds cached features",
                            where="train.cache_features", expected="false (mmsft distill sets it)")
        device = next(core.parameters()).device
        if self.teacher is None:
            self.teacher = self._load_teacher(device)
        s_layers, t_layers = self._layer_map(core) if opts.hidden_weight > 0 else ([], [])
        with captured(core.backbone.blocks(), s_layers) as s_hidden:
            out = model(**batch)
        if "loss" not in out:
            raise ValueError("the batch carries no labels for any head: nothing to train")
        t_logits, t_hidden = self._teacher_outputs(batch, list(out["heads"]), t_layers)
        logs, total = {}, (1 - opts.alpha) * out["loss"]
        if opts.alpha > 0:
            kd = sum(self._soft(name, head_logits(out["heads"][name]), t_logits[name], batch) for name in out["heads"])
            total = total + opts.alpha * kd
            logs["loss/kd"] = float(kd.detach())
        if opts.hidden_weight > 0:
            hidden = self._hidden_loss(core, s_layers, t_layers, s_hidden, t_hidden, batch)
            total = total + opts.hidden_weight * hidden
            logs["loss/hidden"] = float(hidden.detach())
        return total, logs

    def _soft(self, name: str, student: torch.Tensor, teacher: torch.Tensor, batch: dict) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise UserError(f"head '{name}': the student's logits are {tuple(student.shape)}, the teacher's {tuple(teacher.shape)}",
                            where="objective.teacher", expected="a teacher with the same label set (classification) or vocabulary (token-level KD)")
        if student.ndim == 2:
            return soft_kl(student, teacher, self.options.temperature)
        labels = batch[_core_head_target(self.teacher, name)]
        s, mask = lm_positions(student, labels)
        t, _ = lm_positions(teacher, labels)
        return soft_kl(s, t, self.options.temperature, mask)

    @torch.no_grad()
    def _teacher_outputs(self, batch: dict, heads: list[str], t_layers: list[int]):
        missing = [h for h in heads if h not in self.teacher.heads]
        if missing:
            raise UserError(f"the teacher has no head {missing} (it has {list(self.teacher.heads)})", where="objective.teacher")
        cacheable = self.options.cache and not t_layers and all(self.teacher.heads[h].reads == "pooled" for h in heads)
        keys = self._keys(batch) if cacheable else None
        if keys is not None and all(k in self.cache for k in keys):
            self.cache_hits += len(keys)
            device = batch["input_ids"].device
            return {h: torch.stack([self.cache[k][h] for k in keys]).to(device) for h in heads}, {}
        with captured(self.teacher.backbone.blocks(), sorted(set(t_layers))) as t_hidden:
            out = self.teacher(**batch, heads=heads)
        logits = {h: head_logits(out["heads"][h]).detach().float() for h in heads}
        if keys is not None:
            self.cache_misses += len(keys)
            for i, key in enumerate(keys):
                self.cache[key] = {h: logits[h][i].cpu() for h in heads}
        return logits, dict(t_hidden)

    @staticmethod
    def _keys(batch: dict) -> Optional[list[bytes]]:
        ids, mask = batch.get("input_ids"), batch.get("attention_mask")
        if ids is None or mask is None:
            return None
        return [row[m.bool()].cpu().numpy().tobytes() for row, m in zip(ids, mask)]

    def _hidden_loss(self, core, s_layers, t_layers, s_hidden, t_hidden, batch) -> torch.Tensor:
        from .projection import DistillProjection

        projection = next((m for m in core.inserts.values() if isinstance(m, DistillProjection)), None)
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        losses = []
        for s_index, t_index in zip(s_layers, t_layers):
            student, teacher = s_hidden[s_index].float(), t_hidden[t_index].float()
            if projection is not None:
                student = projection.project(s_index, student)
            if student.shape != teacher.shape:
                raise UserError(f"student block {s_index} is {student.shape[-1]} wide, teacher block {t_index} {teacher.shape[-1]}",
                                where="objective.hidden_weight", expected="equal widths, or the distill_projection module (mmsft distill adds it)")
            losses.append((((student - teacher) ** 2) * mask).sum() / (mask.sum() * student.shape[-1]).clamp(min=1))
        return torch.stack(losses).mean()


def _core_head_target(model, head: str) -> str:
    return model.heads[head].target
