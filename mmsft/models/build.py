"""Assembling the composed model from config: backbone (by the kind's family), modules, heads."""
from __future__ import annotations

from ..errors import UserError
from ..registry import BACKBONE_FAMILIES
from .composed import ComposedModel
from .modules import build_modules


def check_context(cfg, backbone, processor) -> None:
    """``model.max_length`` within what the backbone's positions allow (text encoders)."""
    limit = getattr(getattr(backbone.model, "config", None), "max_position_embeddings", None)
    if backbone.family == "text" and limit and cfg.model.max_length > limit:
        raise UserError(f"model.max_length {cfg.model.max_length} exceeds the backbone's {limit} positions", where="model.max_length",
                        expected=f"at most {limit}")


def build_model(cfg, kind, data):
    """(ComposedModel with a pretrained backbone (and towers) and fresh modules and heads, processor).

    ``data`` is the loaded data when training (heads may size themselves from it) and None when a
    saved run is rebuilt.  Heads are created before modules, so adding a module leaves every other
    initial weight of a seeded run unchanged."""
    backbone, processor = BACKBONE_FAMILIES.get(kind.backbone_family_for(cfg)).load(cfg.model.backbone)
    towers = {name: BACKBONE_FAMILIES.get(kind.tower_families[name]).load(source)[0] for name, source in cfg.model.towers.items()}
    check_context(cfg, backbone, processor)
    kind.adapt_backbone(cfg, backbone, processor)
    heads = kind.build_heads(cfg, data, backbone, **({"towers": towers} if towers else {}))
    modules = build_modules(cfg.model.modules, backbone, towers)
    weights = {name: spec.weight for name, spec in cfg.model.heads.items()}
    return ComposedModel(backbone, modules, heads, weights, towers), processor
