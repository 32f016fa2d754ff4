"""Saving a trained composed model the Hugging Face way and loading it back.

``model/`` holds ``adapters/<name>/`` (what each adapter trained: plain backbone weights for ``full``,
a peft adapter folder for ``lora``, the trained tensors for ``frozen``), ``heads.safetensors``,
``modules.safetensors`` (when the model has modules), the tokenizer/processor files, ``mmsft.json``
and a model card ``README.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from .atomic import atomic_folder, save_safetensors, write_json, write_text

FORMAT = 2  # 1: one adapter whose backbone was saved as backbone/ (before the composed model)


def save_model(session, model, folder: Path) -> None:
    """Build ``folder`` aside and move it into place when complete: a crash leaves the old one or none."""
    from .adapters import save_adapters

    cfg = session.cfg
    with atomic_folder(folder, replace=True) as tmp:
        save_adapters(model, cfg.adapters, tmp / "adapters")
        save_safetensors(tmp / "heads.safetensors", model.part_state_dict("heads"))
        if len(model.inserts):
            save_safetensors(tmp / "modules.safetensors", model.part_state_dict("inserts"))
        session.kind.save_processor(session.processor, tmp)
        meta = {"format": FORMAT, "task": cfg.name, "kind": cfg.kind, "backbone": cfg.model.backbone,
                "adapters": {name: spec.method for name, spec in cfg.adapters.items()},
                "heads": {name: spec.type for name, spec in cfg.model.heads.items()},
                "modules": [m.name or m.type for m in cfg.model.modules]}
        write_json(tmp / "mmsft.json", meta)
        write_text(tmp / "README.md", model_card(session, model))


def load_model(cfg, kind, folder: Path):
    from .adapters import load_adapters
    from .errors import UserError
    from .models import build_model

    meta_path = folder / "mmsft.json"
    if not meta_path.is_file():
        raise UserError("the run has no saved model (training did not finish?)", where=str(folder))
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"saved with an older mmsft (model format {meta.get('format', 1)}); retrain the run", where=str(folder))
    model, processor = build_model(cfg, kind, None)
    load_adapters(model, cfg.adapters, folder / "adapters")
    model.heads.load_state_dict(load_file(str(folder / "heads.safetensors")))
    if len(model.inserts):
        model.inserts.load_state_dict(load_file(str(folder / "modules.safetensors")))
    model.eval()
    return model, processor


def model_card(session, model) -> str:
    cfg = session.cfg
    counts = model.param_counts()
    entry = model.backbone.entry
    base = f"{cfg.model.backbone}" + (f" ({entry.description}; license {entry.license})" if entry else "")
    from .registry import ADAPTERS

    adapters = "\n".join(f"  - `{name}` ({spec.method}): `adapters/{name}/` holds {ADAPTERS.get(spec.method).saves}"
                         for name, spec in cfg.adapters.items())
    modules = ", ".join(f"`{m.name or m.type}` ({m.type})" for m in cfg.model.modules) or "none"
    return (
        f"---\nlibrary_name: mmsft\ntags: [mmsft, {cfg.kind}, {', '.join(s.method for s in cfg.adapters.values())}]\n---\n\n"
        f"# {cfg.name} ({cfg.adapter_label})\n\n{cfg.description}\n\n"
        f"- Task kind: `{cfg.kind}`, domain: {cfg.domain}\n- Base backbone: {base}\n"
        f"- Adapters, applied in order:\n{adapters}\n"
        f"- Modules between backbone and heads: {modules}\n"
        f"- Heads: {', '.join(f'`{n}` ({s.type})' for n, s in cfg.model.heads.items())} (`heads.safetensors`)\n"
        f"- Trainable parameters: {counts['trainable_params']:,} of {counts['total_params']:,}\n\n"
        f"Load with `mmsft eval RUN` / `mmsft predict RUN ...`, or `mmsft.pipeline.load_run(RUN)`.\n"
    )
