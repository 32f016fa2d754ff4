"""Saving a trained model the Hugging Face way and loading it back.

``model/`` holds ``backbone/`` (full weights, or only the LoRA adapter via peft), ``heads.safetensors``,
the tokenizer/processor files, ``mmsft.json`` and a model card ``README.md``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file


def write_json(path: Path, data) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def save_model(session, model, folder: Path) -> None:
    cfg = session.cfg
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    saved = session.adapter.save_backbone(model, tmp / "backbone", cfg.adapter.options)
    heads = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
    save_file(heads, str(tmp / "heads.safetensors"))
    session.kind.save_processor(session.processor, tmp)
    meta = {"task": cfg.name, "kind": cfg.kind, "adapter": cfg.adapter.method, "backbone": cfg.model.backbone, "backbone_saved": saved}
    write_json(tmp / "mmsft.json", meta)
    (tmp / "README.md").write_text(model_card(session, model, saved))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_model(cfg, kind, adapter, folder: Path):
    meta = json.loads((folder / "mmsft.json").read_text())
    model, processor = kind.build_model(cfg, None)
    if meta["backbone_saved"]:
        model.backbone = adapter.load_backbone(model.backbone, folder / "backbone", cfg.adapter.options)
    model.heads.load_state_dict(load_file(str(folder / "heads.safetensors")))
    model.eval()
    return model, processor


def model_card(session, model, backbone_saved: bool) -> str:
    cfg = session.cfg
    counts = model.param_counts()
    entry = getattr(model, "zoo_entry", None)
    base = f"{cfg.model.backbone}" + (f" ({entry.description}; license {entry.license})" if entry else "")
    how = {
        "lora": "LoRA adapter weights only (`backbone/` is a peft adapter); load the base backbone and apply it.",
        "full": "all backbone weights (`backbone/` is a full Hugging Face model).",
        "frozen": "the backbone weights that trained" if backbone_saved else "no backbone weights (the base backbone is unchanged).",
    }.get(cfg.adapter.method, "")
    return (
        f"---\nlibrary_name: mmsft\ntags: [mmsft, {cfg.kind}, {cfg.adapter.method}]\n---\n\n"
        f"# {cfg.name} ({cfg.adapter.method})\n\n{cfg.description}\n\n"
        f"- Task kind: `{cfg.kind}`, domain: {cfg.domain}\n- Base backbone: {base}\n"
        f"- Adapter: `{cfg.adapter.method}`; saved here: {how}\n"
        f"- Trainable parameters: {counts['trainable_params']:,} of {counts['total_params']:,}\n"
        f"- Heads: {', '.join(model.heads.keys())} (`heads.safetensors`)\n\n"
        f"Load with `mmsft eval RUN` / `mmsft predict RUN ...`, or `mmsft.pipeline.load_run(RUN)`.\n"
    )
