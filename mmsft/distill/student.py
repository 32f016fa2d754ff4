"""The student's starting point: a zoo model / model folder, or a trained run's backbone -- with
LoRA folded in -- optionally cut to its first k blocks (DistilBERT's initialisation from every
other teacher layer, here the bottom k; Sanh et al. 2019 found the initialisation matters).

A run-based student is written as a plain Hugging Face folder (weights, config with the new block
count, tokenizer) inside the student's run folder (``student_init/``), which becomes its
``model.backbone``: the run stays self-contained.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UserError


@dataclass
class StudentSpec:
    source: str  # zoo name, local model folder, or a run folder
    layers: Optional[int] = None  # run sources: keep the first k blocks

    def validate(self, path: str) -> None:
        if self.layers is not None and self.layers < 1:
            raise UserError(f"layers must be >= 1, got {self.layers}", where=f"{path}.layers")

    @property
    def is_run(self) -> bool:
        return (Path(self.source) / "config.yaml").is_file()


def parse_student(text: str, layers: Optional[int] = None) -> StudentSpec:
    """``NAME`` | ``RUN`` | ``{from: RUN, layers: K}`` (YAML), plus ``--layers K``."""
    import yaml

    from ..config import from_dict

    raw = text.strip()
    if raw.startswith("{"):
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"cannot parse '{text}'", where="--student", expected="{from: RUN, layers: K}") from None
        if not isinstance(data, dict) or "from" not in data:
            raise UserError(f"'{text}' names no 'from'", where="--student", expected="{from: RUN, layers: K}")
        data = dict(data)
        data["source"] = str(data.pop("from"))
        spec = from_dict(StudentSpec, data, "--student")
    else:
        spec = StudentSpec(raw)
    if layers is not None:
        spec.layers = layers
    spec.validate("--student")
    if spec.layers is not None and not spec.is_run:
        raise UserError("layers cuts a trained run's backbone", where="--student", expected="a run folder as the student's source")
    return spec


def write_init(spec: StudentSpec, folder: Path) -> dict:
    """Save the run-based student's backbone (first ``layers`` blocks) as a model folder; returns a record."""
    from ..adapters import merge_adapters
    from ..pipeline import load_run
    from ..compress.structure import keep_blocks

    session = load_run(spec.source)
    merge_adapters(session.model, session.cfg.adapters)
    backbone = session.model.backbone
    if any(s.method == "compressed" for s in session.cfg.adapters.values()):
        raise UserError("a compressed run cannot seed a student (its structure is not a plain model folder)", where="--student")
    total = len(backbone.blocks())
    if spec.layers is not None:
        if spec.layers > total:
            raise UserError(f"the run's backbone has {total} blocks, cannot keep {spec.layers}", where="--student layers")
        keep_blocks(backbone, spec.layers)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(folder)
    session.processor.save_pretrained(folder)
    return {"from": str(spec.source), "blocks": spec.layers or total, "source_blocks": total, "base_backbone": session.cfg.model.backbone}
