"""``dann``: domain-adversarial training (Ganin et al. 2016) as an objective (``objective: {name: dann}``).

Each step the objective runs the composed model on the source batch (the task loss, exactly as
``single``) and on a batch of the target domain's unlabelled texts (``target_texts``: a JSONL of
``{"text"}`` lines, see ``texts.py``), takes the pooled features the task head reads for both, and
feeds them through a gradient-reversal layer into a small domain classifier (source = 0, target = 1).
The loss is ``task + domain``: the classifier learns to tell the domains apart, and the reversed
gradient, scaled by ``lambda_p``, drives the backbone's trainable part (LoRA factors, or every weight
under ``full``) towards features the classifier cannot separate.

Reversal weight: ``lambda_p = weight * (2 / (1 + exp(-gamma * p)) - 1)`` with ``p`` = optimizer steps
done / total steps (``schedule: ganin``, gamma 10, Ganin's schedule; ``linear`` and ``constant`` too).

``adversary``: what the backbone is pushed towards.  ``reversal`` (Ganin's DANN) maximises the
classifier's loss, which has no ceiling: under AdamW the reversed gradient is normalised per parameter,
so once the task loss is small it sets the step whatever ``weight`` is, and the features run away from
the classifier (books -> dvd, LoRA lr 1e-3: domain loss 0.2 -> 7 at weight 0.1, 16-23 with a 10x faster
classifier; the task falls to chance).  ``confusion`` (Tzeng et al. 2015's domain confusion) gives the
backbone, with weight ``lambda_p``, the cross-entropy of the classifier's prediction against the uniform
distribution: bounded, and its gradient vanishes once the classifier cannot tell the domains apart.  The
classifier trains on the same features detached, as under ``reversal``.  Measured at weight 0.1 (LoRA, one
seed): stable over 4 epochs, books -> dvd +0.00 and kitchen -> books +6.15 over source_only.  So ``confusion``
is the default; ``adversary: reversal`` is Ganin's original game, for comparison.

Why the classifier is not part of the model: the kind's heads are the task's outputs (saved, scored,
loaded by ``mmsft eval``), and the domain classifier is training machinery only.  So the objective
owns it, with its own AdamW stepped from the runner's ``on_step_end`` (after the runner's own step;
gradient accumulation and clipping follow ``train.*``), and hands the runner a callback whose
``state_dict`` carries the classifier, its optimizer state and the target stream's position, which
the runner stores in every checkpoint: resume is exact.  The saved run is a plain task model.

Target labels are never available to this objective: it reads texts only, from a file that holds
nothing else.  Single process only (two forward passes per step do not fit DDP's one-forward rule).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..registry import OBJECTIVES
from ..training.callbacks import Callback
from ..training.objectives import Objective
from .grl import grad_reverse, reversal_weight
from .texts import TextStream, read_texts


@dataclass
class DannOptions:
    target_texts: Optional[str] = None  # JSONL of the target's unlabelled training texts (the benchmark writes it)
    tokenizer: Optional[str] = None  # zoo name or folder; default: the model's backbone
    max_length: Optional[int] = None  # target texts' token limit; default 128 (the benchmark passes the task's)
    batch_size: Optional[int] = None  # target texts per step; default train.batch_size
    max_texts: Optional[int] = None  # use only the first N target texts (smoke runs)
    head: Optional[str] = None  # the head whose pooled input is aligned; default: the task's one head
    # the reversal weight's ceiling (lambda at p = 1).  Ganin's 1.0 wrecks a LoRA fine-tune at lr 1e-3 (books -> dvd:
    # source validation at chance from the first epoch, test 0.508); 0.1 trains the first epoch (validation 0.82-0.88) but
    # a 4-epoch run still fell to chance in its second (early stopping keeps epoch 1); adversary confusion is the stable game
    weight: float = 0.1
    schedule: Literal["ganin", "linear", "constant"] = "ganin"
    adversary: Literal["reversal", "confusion"] = "confusion"  # see the module docstring: reversal ran away in every probe
    gamma: float = 10.0  # steepness of the ganin schedule
    hidden: int = 256  # domain classifier: Linear(width, hidden) - ReLU - Dropout - Linear(hidden, 2); 0 = one linear layer
    dropout: float = 0.1
    lr: float = 1.0e-3  # the domain classifier's own AdamW (constant LR)
    seed: int = 0  # classifier initialisation and order of the target stream

    def validate(self, path: str) -> None:
        where = path or "objective"
        if self.weight < 0 or self.gamma <= 0 or self.lr <= 0 or self.hidden < 0 or not 0 <= self.dropout < 1:
            raise UserError("need weight >= 0, gamma > 0, lr > 0, hidden >= 0 and dropout in [0, 1)", where=where)
        for name in ("max_length", "batch_size", "max_texts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be >= 1, got {value}", where=f"{where}.{name}")


def _core(model):
    """The composed model behind an accelerate / DDP wrapper."""
    return getattr(model, "module", model)


@OBJECTIVES.register("dann")
class Dann(Objective):
    """Task loss + domain-classifier loss through a gradient-reversal layer (see the module docstring)."""

    Options = DannOptions

    def __init__(self, options: DannOptions):
        super().__init__(options)
        if not options.target_texts:
            raise UserError("dann needs the target domain's unlabelled texts", where="objective.target_texts",
                            expected="a JSONL file of {\"text\": ...} lines (`mmsft bench cross-domain` writes it)")
        self.texts = read_texts(options.target_texts, options.max_texts)
        self.classifier: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.stream: Optional[TextStream] = None
        self.progress = 0.0  # optimizer steps done / total, set by the callback
        self.window = {"domain_loss": 0.0, "domain_accuracy": 0.0, "n": 0}
        self._callback = _DannCallback(self)

    def callbacks(self) -> list:
        return [self._callback]

    def head_name(self, core) -> str:
        if self.options.head is not None:
            if self.options.head not in core.heads:
                raise UserError(f"no head named '{self.options.head}'", where="objective.head", expected="one of: " + ", ".join(core.heads))
            return self.options.head
        if len(core.heads) != 1:
            raise UserError(f"the task has heads {list(core.heads)}: name the one to align", where="objective.head")
        return next(iter(core.heads))

    def build(self, width: int, device) -> None:
        """The domain classifier, initialised from ``seed`` without touching the global RNG (a resumed
        run must draw the same dropout masks as an uninterrupted one)."""
        o = self.options
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.seed)
            layers = [nn.Linear(width, 2)] if not o.hidden else [nn.Linear(width, o.hidden), nn.ReLU(), nn.Dropout(o.dropout), nn.Linear(o.hidden, 2)]
            self.classifier = nn.Sequential(*layers).to(device)
        self.optimizer = torch.optim.AdamW(self.classifier.parameters(), lr=o.lr, weight_decay=0.0)

    def lam(self) -> float:
        return reversal_weight(self.progress, self.options.schedule, self.options.weight, self.options.gamma)

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        core = _core(model)
        head = self.head_name(core)
        pooled: list[torch.Tensor] = []
        hook = core.heads[head].register_forward_pre_hook(lambda _m, args: pooled.append(args[0]))
        try:
            out = model(**batch)
            model(**self.stream.next(next(core.parameters()).device), heads=[head])  # target texts: no labels, no task loss
        finally:
            hook.remove()
        if "loss" not in out:
            raise ValueError("the batch carries no labels for any head: nothing to train")
        source, target = pooled
        features = torch.cat([source, target])
        domains = torch.cat([torch.zeros(len(source), dtype=torch.long), torch.ones(len(target), dtype=torch.long)]).to(features.device)
        self.classifier.train(model.training)
        if self.options.adversary == "reversal":
            logits = self.classifier(grad_reverse(features, self.lam())).float()
            domain_loss = domain_terms = F.cross_entropy(logits, domains)
        else:
            logits = self.classifier(features.detach()).float()
            domain_loss = F.cross_entropy(logits, domains)  # trains the classifier only
            frozen = {k: v.detach() for k, v in self.classifier.named_parameters()}
            fooled = torch.func.functional_call(self.classifier, frozen, (features,)).float()
            domain_terms = domain_loss + self.lam() * -F.log_softmax(fooled, -1).mean()  # backbone only: CE against uniform
        self.window["domain_loss"] += float(domain_loss.detach())
        self.window["domain_accuracy"] += float((logits.detach().argmax(-1) == domains).float().mean())
        self.window["n"] += 1
        return out["loss"] + domain_terms, {"loss/task": float(out["loss"].detach()), "loss/domain": float(domain_loss.detach()),
                                             "dann/lambda": self.lam()}


class _DannCallback(Callback):
    """Builds the classifier and the target stream at train begin, steps the classifier's optimizer
    after each runner step, logs the adversarial game to ``dann.jsonl`` and carries its state into
    the runner's checkpoints."""

    def __init__(self, objective: Dann):
        self.objective = objective
        self._pending: Optional[dict[str, torch.Tensor]] = None

    def on_train_begin(self, runner, state) -> None:
        from transformers import AutoTokenizer

        from ..zoo import resolve

        o, options = self.objective, self.objective.options
        if runner.accelerator.num_processes > 1:
            raise UserError("dann runs in one process (it runs the model twice per step)", where="objective.name",
                            expected="a single-process run")
        core = runner.accelerator.unwrap_model(runner.model)
        o.head_name(core)
        o.build(core.backbone.width, runner.accelerator.device)
        tokenizer = AutoTokenizer.from_pretrained(resolve(options.tokenizer or core.backbone.name).path)
        o.stream = TextStream(o.texts, tokenizer, options.max_length or 128, options.batch_size or runner.spec.batch_size, options.seed)
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None
        o.progress = state.step / max(runner.total_steps, 1)

    def on_step_end(self, runner, state) -> None:
        o = self.objective
        if runner.spec.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(o.classifier.parameters(), runner.spec.max_grad_norm)
        o.optimizer.step()
        o.optimizer.zero_grad(set_to_none=True)
        o.progress = state.step / max(runner.total_steps, 1)
        window = o.window
        if window["n"] and (state.step % runner.spec.log_every_steps == 0 or state.step == runner.total_steps):
            if runner.accelerator.is_main_process:
                record = {"step": state.step, "lambda": round(o.lam(), 5), "domain_loss": window["domain_loss"] / window["n"],
                          "domain_accuracy": window["domain_accuracy"] / window["n"]}
                with (runner.run_dir / "dann.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            o.window = {"domain_loss": 0.0, "domain_accuracy": 0.0, "n": 0}

    # -- checkpoint state: classifier weights, its AdamW moments, the target stream position -----
    def state_dict(self) -> dict[str, torch.Tensor]:
        o = self.objective
        if o.classifier is None:
            return {}
        out = {f"classifier.{k}": v.detach().cpu() for k, v in o.classifier.state_dict().items()}
        for index, moments in o.optimizer.state_dict()["state"].items():
            out.update({f"optim.{index}.{k}": v.detach().cpu() for k, v in moments.items() if torch.is_tensor(v)})
        return {**out, **o.stream.state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._pending = dict(state)  # applied in on_train_begin, once the classifier exists

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        o = self.objective
        device = next(o.classifier.parameters()).device
        o.classifier.load_state_dict({k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")})
        saved = o.optimizer.state_dict()
        moments: dict[int, dict] = {}
        for key, value in state.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                moments.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
        o.optimizer.load_state_dict({"state": moments, "param_groups": saved["param_groups"]})
        o.stream.load(state)
