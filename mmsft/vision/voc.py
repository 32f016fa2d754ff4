"""Pascal VOC XML: one file per image with ``<filename>``, ``<size><width><height>`` and
``<object><name>..</name><difficult>0</difficult><bndbox><xmin>..</xmin>...</bndbox></object>``.

Coordinates are 1-based pixel indices (xmin=1 is the left column), so xmin/ymin are shifted by -1 into
the continuous xyxy convention (as Detectron2 does); xmax/ymax are kept.  Class names come from
``class_names`` (objects with other names are ``class_out_of_range``) or, if not given, the sorted set
of names found.  ``<difficult>1</difficult>`` objects are kept unless ``keep_difficult=False``.

Layout: either a VOC root (``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/<split>.txt``)
or a folder of XML files with ``image_dir`` (default: the XML folder).  The XML files define the split:
images without an XML are not part of it (not an error, unlike YOLO).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional, Sequence, Union
from xml.parsers import expat

from ..errors import UserError
from .boxes import DEFAULT_TOLERANCE, check_box
from .samples import BadSample, Collector, DetectionSample, DetectionSet, probe_image


class _Node:
    __slots__ = ("tag", "line", "text", "children")

    def __init__(self, tag: str, line: int):
        self.tag, self.line, self.text, self.children = tag, line, "", []

    def find(self, tag: str) -> Optional["_Node"]:
        return next((c for c in self.children if c.tag == tag), None)

    def findtext(self, tag: str) -> Optional[str]:
        node = self.find(tag)
        return node.text.strip() if node is not None else None


def parse_xml(path: Path) -> _Node:
    """Tiny expat tree that keeps the line number of every element (ElementTree does not)."""
    parser = expat.ParserCreate()
    root = _Node("#document", 0)
    stack = [root]

    def start(tag, _attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _tag: stack.pop()
    parser.CharacterDataHandler = lambda data: setattr(stack[-1], "text", stack[-1].text + data)
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as exc:
        raise BadSample("malformed_label", f"invalid XML: {expat.ErrorString(exc.code)}", where=f"{path}:{exc.lineno}") from None
    except OSError as exc:
        raise BadSample("malformed_label", f"cannot read: {exc}", where=str(path)) from None
    if not root.children or root.children[0].tag != "annotation":
        raise BadSample("malformed_label", "root element is not <annotation>", where=f"{path}:1")
    return root.children[0]


def _number(node: _Node, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise BadSample("malformed_label", f"<{tag}> is {text!r}, not a number", where=where) from None


def _resolve_layout(annotations: Path, image_dir: Optional[Path], split: Optional[str]) -> tuple[list[Path], Path]:
    if (annotations / "Annotations").is_dir():
        ann_dir = annotations / "Annotations"
        image_dir = image_dir or annotations / "JPEGImages"
        if split:
            ids_file = annotations / "ImageSets" / "Main" / f"{split}.txt"
            if not ids_file.is_file():
                raise UserError(f"split '{split}' has no id list", where=str(ids_file))
            try:
                text = ids_file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                line = ids_file.read_bytes()[: exc.start].count(b"\n") + 1
                raise UserError(f"split id list is not UTF-8 ({exc.reason})", where=f"{ids_file}:{line}") from None
            ids = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
            return [ann_dir / f"{i}.xml" for i in ids], image_dir
    elif annotations.is_dir():
        ann_dir = annotations
    elif annotations.suffix == ".xml" and annotations.is_file():
        return [annotations], image_dir or annotations.parent
    else:
        raise UserError("VOC annotations not found", where=str(annotations), expected="a VOC root, a folder of .xml or one .xml")
    return sorted(ann_dir.glob("*.xml")), image_dir or ann_dir


def load_voc(annotations: Union[str, Path], image_dir: Optional[Union[str, Path]] = None, *,
             split: Optional[str] = None, class_names: Optional[Sequence[str]] = None, keep_difficult: bool = True,
             skip_bad: bool = False, box_tolerance: float = DEFAULT_TOLERANCE, decode_images: bool = True) -> DetectionSet:
    """Load Pascal VOC XML annotations (see module docstring for the layouts)."""
    xml_files, img_dir = _resolve_layout(Path(annotations), Path(image_dir) if image_dir else None, split)
    collector = Collector(skip_bad)
    parsed: list[tuple[Path, _Node]] = []
    for xml in xml_files:
        try:
            if not xml.is_file():
                raise BadSample("malformed_label", "annotation file listed in the split is missing", where=str(xml))
            parsed.append((xml, parse_xml(xml)))
        except BadSample as exc:
            collector.reject(exc)
    if class_names is None:
        class_names = sorted({(obj.findtext("name") or "") for _, ann in parsed for obj in ann.children if obj.tag == "object"} - {""})
    names = [str(n) for n in class_names]
    to_label = {n: i for i, n in enumerate(names)}

    dropped: Counter = Counter()
    samples: list[DetectionSample] = []
    for xml, ann in parsed:
        try:
            filename = ann.findtext("filename")
            if not filename:
                raise BadSample("malformed_label", "no <filename>", where=f"{xml}:{ann.line}")
            image_path = img_dir / filename
            if not image_path.is_file():
                raise BadSample("label_without_image", f"image {image_path} not found", where=f"{xml}:{ann.find('filename').line}")
            width, height = probe_image(image_path, decode=decode_images, where=f"{xml}: {image_path}")
            size = ann.find("size")
            if size is not None and size.findtext("width") and size.findtext("height"):
                w_decl, h_decl = _number(size, "width", f"{xml}:{size.line}"), _number(size, "height", f"{xml}:{size.line}")
                if (int(w_decl), int(h_decl)) != (width, height):
                    raise BadSample("size_mismatch", f"<size> says {int(w_decl)}x{int(h_decl)} but the image is {width}x{height}",
                                    where=f"{xml}:{size.line}")
            boxes, labels = [], []
            for obj in (c for c in ann.children if c.tag == "object"):
                where = f"{xml}:{obj.line}"
                name = obj.findtext("name")
                if name not in to_label:
                    raise BadSample("class_out_of_range", f"class '{name}' is not in the class list", where=where,
                                    expected="one of: " + ", ".join(names))
                if not keep_difficult and (obj.findtext("difficult") or "0") == "1":
                    dropped["difficult"] += 1
                    continue
                bnd = obj.find("bndbox")
                if bnd is None:
                    raise BadSample("malformed_label", "<object> has no <bndbox>", where=where)
                where = f"{xml}:{bnd.line}"
                x1, y1, x2, y2 = (_number(bnd, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append(check_box((x1 - 1, y1 - 1, x2, y2), width, height, tolerance=box_tolerance, where=where))
                labels.append(to_label[name])
            samples.append(DetectionSample(image_path, width, height, boxes, labels))
        except BadSample as exc:
            collector.reject(exc)
    return collector.finish(samples, names, str(annotations), dropped)
