"""Scoring a trained run on another task's test split: the target's own reader, split and cleaning,
its ``model.max_length``, and its labels matched to the source model's class ids by name.

The source run's config is kept (heads, eval batch size, metrics' inputs); only the ``data`` block
becomes the target's, with the target's label names reordered into the source's id order
(``labels.label_order``), so every target row carries the id the source model should predict.
The row grouping of the split is by label name, not id, so the test rows are exactly those the
target task's own runs are scored on.
"""
from __future__ import annotations

import dataclasses


def score_on_target(session, target_cfg, order: list[str]) -> dict:
    """{accuracy, f1_macro, n} of ``session`` (``pipeline.load_run``) on ``target_cfg``'s test split."""
    from ..metrics import compute

    cfg = session.cfg
    data = dataclasses.replace(target_cfg.data, labels=list(order), augment=[])
    eval_cfg = dataclasses.replace(cfg, name=target_cfg.name, data=data,
                                   model=dataclasses.replace(cfg.model, max_length=target_cfg.model.max_length),
                                   train=dataclasses.replace(cfg.train, sampler="length"))
    kind = session.kind
    prepared = kind.prepare(eval_cfg, session.processor, kind.load_data(eval_cfg))
    out = kind.evaluate(eval_cfg, session.model, prepared, "test", session.processor)
    metrics = compute(["accuracy", "f1_macro"], predictions=out.predictions, references=out.references, labels=list(range(len(order))))
    return {"accuracy": float(metrics["accuracy"]), "f1_macro": float(metrics["f1_macro"]), "n": len(out.references)}
