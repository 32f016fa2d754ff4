"""The composed task model: backbone -> modules -> named heads, one forward and one generate path.

``forward(**batch, heads=None)`` runs the backbone once (with its modules hooked in), then each
selected head, and returns ``{"heads": {name: outputs}, "loss": weighted sum, "losses": {name: loss}}``
(losses only for heads whose labels the batch carries).  ``generate`` decodes through the same
backbone and modules, so a module changes what ``eval`` and ``predict`` produce for every kind.
A frozen, deterministic backbone can be run once per sample (``encode``) and its pooled features
cached; ``forward(pooled=...)`` then runs the heads alone.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Optional

import torch
from torch import nn

from .backbone import Backbone
from .features import FeatureRequest, Features
from .heads import Head
from .modules import ModelModule, ModuleContext


_UNROUTED = object()  # no task routed yet: every adapter active, as the stack applied them


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class ComposedModel(nn.Module):
    """``backbone`` (adapters act on ``backbone.model``), ``inserts`` (``model.modules``; the name
    ``modules`` is ``nn.Module``'s own) and ``heads``; frozen parts listed by ``keep_eval`` stay in eval
    mode while training (no dropout noise, frozen batch-norm statistics: cached features stay exact),
    and so does every batch-norm layer whose weights are frozen (its statistics are not saved)."""

    def __init__(self, backbone: Backbone, inserts: dict[str, ModelModule], heads: dict[str, Head],
                 loss_weights: Optional[dict[str, float]] = None, towers: Optional[dict[str, Backbone]] = None):
        super().__init__()
        self.backbone = backbone
        self.towers = nn.ModuleDict(towers or {})  # other backbones (an image tower beside a text backbone)
        self.inserts = nn.ModuleDict(inserts)
        self.heads = nn.ModuleDict(heads)
        self.loss_weights = dict(loss_weights or {})
        self._keep_eval: list[str] = []
        self._handles: list = []
        self._context: Optional[ModuleContext] = None
        self.set_adapter_router(None)
        self.attach()

    def set_adapter_router(self, router) -> None:
        """``router(task)`` activates the adapters serving ``task`` (set by the adapter stack when some serve one
        task each, mmsft.adapters.stack); until the first ``use_task`` every adapter stays active."""
        self.adapter_router, self._task = router, _UNROUTED

    def use_task(self, task: Optional[str]) -> None:
        """Activate the shared adapters plus ``task``'s own (a no-op without task-specific adapters)."""
        if self.adapter_router is not None and task != self._task:
            self.adapter_router(task)
            self._task = task

    # -- modules as hooks on the backbone's blocks ----------------------------------------------
    def attach(self) -> None:
        """(Re)hook the modules onto the current backbone blocks: after building, after an adapter
        wrapped or merged the backbone, after loading saved weights."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if not len(self.inserts):
            return
        blocks = self.backbone.blocks()
        for module in self.inserts.values():
            for index in module.points():
                self._handles.append(blocks[index].register_forward_hook(self._transform_hook(module, index)))
        for index in sorted({i for m in self.inserts.values() for i in m.reads_layers()}):
            self._handles.append(blocks[index].register_forward_hook(self._capture_hook(index)))

    def _transform_hook(self, module: ModelModule, index: int):
        def hook(_block, _args, output):
            context = self._context if self._context is not None else ModuleContext()
            return _replace_first(output, module.transform(index, _first(output), context))
        return hook

    def _capture_hook(self, index: int):
        def hook(_block, _args, output):
            if self._context is not None:
                self._context.hidden[index] = _first(output)
        return hook

    @contextlib.contextmanager
    def _using(self, context: ModuleContext):
        previous, self._context = self._context, context
        try:
            yield context
        finally:
            self._context = previous

    def _split(self, batch: dict) -> tuple[dict, ModuleContext]:
        """(backbone inputs, module context with the extra keys the modules declared)."""
        wanted = {k for m in self.inserts.values() for k in m.batch_keys}
        inputs = {k: v for k, v in batch.items() if k in self.backbone.input_keys and v is not None}
        return inputs, ModuleContext({k: batch[k] for k in wanted if k in batch})

    # -- forward --------------------------------------------------------------------------------
    def tower_features(self, batch: dict) -> dict[str, Features]:
        """Each tower's features, for the towers whose inputs the batch carries."""
        out = {}
        for name, tower in self.towers.items():
            inputs = {k: batch[k] for k in tower.input_keys if batch.get(k) is not None}
            if inputs:
                out[name] = tower(inputs)
        return out

    def features(self, batch: dict, request: FeatureRequest = FeatureRequest()) -> Features:
        """The backbone's ``Features`` for ``batch`` (modules hooked in), with ``hidden`` holding the
        outputs of the blocks the request names (captured for this call only), ``towers`` the other
        backbones' features, and ``joint`` set by a fusion module."""
        inputs, context = self._split(batch)
        towers = self.tower_features(batch)
        blocks = self.backbone.blocks() if request.hidden_layers else []
        wanted = sorted({self.backbone.block_index(i) for i in request.hidden_layers})
        handles = [blocks[i].register_forward_hook(self._capture_hook(i)) for i in wanted]
        try:
            with self._using(context):
                features = self.backbone(inputs, request) if inputs else Features()  # a tower-only batch (images alone)
        finally:
            for handle in handles:
                handle.remove()
        features.hidden.update(context.hidden)
        return self.fuse(features, towers)

    def fuse(self, features: Features, towers: dict[str, Features]) -> Features:
        """Attach tower features (computed here or, at retrieval, for a whole candidate set) and let
        the fusion modules bind ``features.joint``."""
        features.towers = towers
        for module in self.inserts.values():
            if module.fuses and module.fuses in towers:
                module.fuse(features)
        return features

    def _request(self, names: Iterable[str], batch: dict) -> FeatureRequest:
        request = FeatureRequest()
        for name in names:
            request = request.merge(self.heads[name].request(batch))
        return request

    def forward(self, heads: Optional[list[str]] = None, pooled: Optional[dict] = None, **batch) -> dict:
        names = list(heads or self.heads.keys())
        if heads and len(names) == 1:  # a multi-task batch trains one task's head: route to its adapters
            self.use_task(names[0])
        features = None
        if pooled is None or any(self.heads[n].reads == "features" for n in names):
            features = self.features(batch, self._request(names, batch))
        outputs, losses = {}, {}
        for name in names:
            head = self.heads[name]
            if head.reads == "pooled":
                inputs = pooled[name] if pooled is not None else head.pool(features, batch)
            else:
                inputs = features
            outputs[name] = out = head(inputs, batch)
            loss = head.loss(out, batch)
            if loss is not None:
                losses[name] = loss
        result = {"heads": outputs}
        if losses:
            weighted = [loss * self.loss_weights[n] if self.loss_weights.get(n, 1.0) != 1.0 else loss for n, loss in losses.items()]
            result["loss"] = weighted[0] if len(weighted) == 1 else torch.stack(weighted).sum()
            result["losses"] = {n: loss.detach() for n, loss in losses.items()}
        return result

    # -- feature cache --------------------------------------------------------------------------
    def feature_cache_ok(self) -> bool:
        """True when running the backbone once per sample gives exactly what training would: no
        backbone, tower, hooked or fusion module weight trains and the backbone is kept in eval
        mode, and every head reads pooled features."""
        if any(p.requires_grad for p in self.backbone.parameters()) or "backbone" not in self._keep_eval:
            return False
        if any(p.requires_grad for p in self.towers.parameters()):
            return False
        if any((m.points() or getattr(m, "fuses", None)) and any(p.requires_grad for p in m.parameters()) for m in self.inserts.values()):
            return False
        return all(h.reads == "pooled" for h in self.heads.values())

    @torch.no_grad()
    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """Pooled features for every head (what ``forward(pooled=...)`` takes)."""
        features = self.features(batch)
        return {name: head.pool(features, batch) for name, head in self.heads.items()}

    # -- generation -----------------------------------------------------------------------------
    def generate(self, tokenizer, prompts: list[list[int]], options, extras: Optional[dict] = None, desc: str = "generate"):
        """Decode ``prompts`` (token ids) with the backbone's own LM head, modules hooked in."""
        context = ModuleContext(dict(extras or {})).expand(getattr(options, "num_beams", 1))
        with self._using(context):
            return self.backbone.generate(tokenizer, prompts, options, desc=desc)

    # -- training helpers -----------------------------------------------------------------------
    def keep_eval(self, *names: str) -> None:
        self._keep_eval = list(dict.fromkeys([*self._keep_eval, *names]))

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self._keep_eval:
            self.get_submodule(name).eval()
        if mode:  # a batch-norm layer whose weights are frozen keeps its running statistics too (LoRA on a CNN)
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                    module.eval()
        return self

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable_params": trainable, "total_params": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def part_state_dict(self, part: str) -> dict[str, torch.Tensor]:
        """``heads`` or ``inserts`` weights (buffers included), detached on the CPU."""
        return {k: v.detach().contiguous().cpu() for k, v in getattr(self, part).state_dict().items()}
