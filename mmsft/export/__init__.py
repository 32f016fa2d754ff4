"""``mmsft export RUN --format hf|onnx [--out DIR]``: a trained run as a folder the ecosystem loads alone.

Why: a run folder is mmsft's (composed model, adapters apart, heads in their own file); people ship
models as plain Hugging Face folders or ONNX files.  Per task kind (``EXPORTERS``, one module each):

* ``text_classification``: ``hf`` -> ``AutoModelForSequenceClassification`` (BERT-architecture encoders:
  LoRA / DoRA merged, the head mapped exactly, see ``text_classification.py`` for the mean pooling);
  ``onnx`` -> ``model.onnx`` (token ids -> logits) + tokenizer, checked with onnxruntime;
* ``generation``: ``hf`` -> ``AutoModelForCausalLM`` + tokenizer (role tokens included) + a chat template
  that renders prompts exactly as mmsft does + ``generation_config.json`` (the run's decoding);
* ``detection``: ``hf`` -> a torchvision detector's state dict (``model.safetensors``) + ``config.json``
  + ``load_torchvision.py`` (torchvision alone builds and loads it).

Every export is checked against the run before it is installed (``export.json`` records the largest
difference) and written aside, then renamed into place (``mmsft.atomic``): a failed export leaves
nothing.  What cannot be exported faithfully is refused with the reason (modules between backbone
and heads, knowledge bases, image towers, several heads).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from ..registry import Registry

FORMATS = ("hf", "onnx")
EXPORTERS: Registry = Registry("exporter", ["mmsft.export.text_classification", "mmsft.export.generation", "mmsft.export.detection"])


class Exporter:
    """One task kind's exports: ``formats`` it writes and ``write(session, fmt, folder) -> record``."""

    kind = ""
    formats: tuple[str, ...] = ()

    def write(self, session, fmt: str, folder: Path) -> dict:
        raise NotImplementedError


def register_exporter(cls: type) -> type:
    EXPORTERS.add(cls.kind, cls())
    return cls


def plain_session(run_dir: Union[str, Path]):
    """The run loaded, its mergeable adapters folded into the base weights, and checked exportable."""
    from ..adapters import merge_adapters
    from ..pipeline import load_run

    session = load_run(run_dir)
    cfg, model = session.cfg, session.model
    reasons = []
    if len(model.inserts):
        reasons.append(f"modules between backbone and heads ({', '.join(model.inserts)}) have no place in a plain model")
    if len(model.towers):
        reasons.append(f"towers ({', '.join(model.towers)}) beside the backbone")
    if cfg.knowledge:
        reasons.append("a knowledge base is used at inference")
    if len(model.heads) != 1:
        reasons.append(f"{len(model.heads)} heads")
    if reasons:
        raise UserError("this run cannot be exported as a plain model: " + "; ".join(reasons), where=str(run_dir),
                        expected="a run with one head and no modules, towers or knowledge (mmsft eval / predict serve the others)")
    merge_adapters(model, cfg.adapters)
    model.eval()
    return session


def default_out(run_dir: Path, fmt: str) -> Path:
    return Path(run_dir) / f"export-{fmt}"


def export_run(run_dir: Union[str, Path], fmt: str = "hf", out: Optional[Union[str, Path]] = None) -> Path:
    """Write the export of ``run_dir`` in ``fmt`` to ``out`` (default ``RUN/export-FMT``); returns the folder."""
    import json

    from ..atomic import atomic_folder, write_json
    from ..spec import load_run_config

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'", where="--format", expected=" or ".join(FORMATS))
    kind = load_run_config(run_dir).kind
    if kind not in EXPORTERS:
        raise UserError(f"no export for {kind} runs", where=str(run_dir), expected="a run of: " + ", ".join(EXPORTERS.names()))
    exporter = EXPORTERS.get(kind)
    if fmt not in exporter.formats:
        raise UserError(f"a {kind} run exports as {' or '.join(exporter.formats)}, not {fmt}", where="--format",
                        expected=" or ".join(exporter.formats))
    folder = Path(out) if out else default_out(run_dir, fmt)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError("the export folder exists and is not empty", where=str(folder), expected="a new folder (--out DIR)")
    session = plain_session(run_dir)
    with atomic_folder(folder) as tmp:
        record = exporter.write(session, fmt, tmp)
        metrics = run_dir / "metrics.json"
        source = json.loads(metrics.read_text()) if metrics.is_file() else {}
        write_json(tmp / "export.json", {"format": fmt, "kind": kind, "run": str(run_dir.resolve()), "task": session.cfg.name,
                                         "adapters": session.cfg.adapter_label, "backbone": session.cfg.model.backbone,
                                         "test": source.get("test", {}), **record})
    return folder


__all__ = ["EXPORTERS", "Exporter", "FORMATS", "export_run", "plain_session", "register_exporter"]
