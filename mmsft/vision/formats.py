"""One entry point over the three label formats: ``load_detection(source, fmt="auto", ...)``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from ..errors import UserError
from .coco import load_coco
from .samples import DetectionSet
from .voc import load_voc
from .yolo import load_yolo

LOADERS = {"yolo": load_yolo, "coco": load_coco, "voc": load_voc}


def detect_format(source: Union[str, Path]) -> str:
    """``coco`` for a .json, ``voc`` for an .xml or a folder with Annotations/ or .xml files,
    ``yolo`` for a data.yaml or a folder holding one / images+labels."""
    path = Path(source)
    if path.suffix == ".json":
        return "coco"
    if path.suffix in (".yaml", ".yml") or (path / "data.yaml").is_file() or (path / "labels").is_dir():
        return "yolo"
    if path.suffix == ".xml" or (path / "Annotations").is_dir() or (path.is_dir() and any(path.glob("*.xml"))):
        return "voc"
    raise UserError("cannot tell the label format", where=str(path),
                    expected="a COCO .json, a YOLO data.yaml / folder with labels/, or VOC .xml files")


def load_detection(source: Union[str, Path], fmt: str = "auto", **options: Any) -> DetectionSet:
    """Dispatch to ``load_yolo`` / ``load_coco`` / ``load_voc``; ``options`` go to the loader."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt not in LOADERS:
        raise UserError(f"unknown detection format '{fmt}'", expected="auto, " + ", ".join(LOADERS))
    return LOADERS[fmt](source, **options)
