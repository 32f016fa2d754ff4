"""Format readers: one function per file format, registered by name, returning rows with a source.

Every row is ``{"text": str, "label": str, "source": "file:line"}`` (extra columns pass through
for kinds that want them).  Errors name the file and line and say what was expected.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import UserError
from ..registry import Registry

Reader = Callable[..., list[dict]]
READERS: Registry[Reader] = Registry("data format", locations=["mmsft.data.tables"])


def read_text(path: Path, encoding: str) -> str:
    """Whole file as text; a wrong encoding names the line where decoding failed."""
    if not path.is_file():
        raise UserError("data file not found", where=str(path))
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError("data file is empty", where=str(path))
    try:
        return raw.decode(encoding)
    except LookupError:  # not a codec name (or not a text codec: base64, zlib, ...)
        raise UserError(f"unknown text encoding {encoding!r}", where="data.encoding",
                        expected="a Python codec name such as utf-8, latin-1, cp1252") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"cannot decode byte 0x{raw[exc.start]:02x} as {encoding}",
            where=f"{path}:{line}",
            expected=f"{encoding} text (set data.encoding, e.g. latin-1)",
        ) from None


def _pick_column(header: list[str], wanted: str | list[str], path: Path, role: str) -> str:
    options = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in options:
        if name in header:
            return name
    raise UserError(
        f"missing {role} column {' or '.join(repr(o) for o in options)}",
        where=f"{path}:1",
        expected="columns " + column_list(header),
    )


def column_list(header: list[str], most: int = 12) -> str:
    """A header for an error message: one line, however long or odd the first row of the file is."""
    names = [repr(h if len(h) <= 40 else h[:37] + "...") for h in header[:most]]
    return ", ".join(names) + (f", ... ({len(header)} in all)" if len(header) > most else "")


def _read_delimited(path: Path, *, encoding: str, text_column, label_column: str, delimiter: str, extra_columns=()) -> list[dict]:
    text = read_text(path, encoding)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError("data file is empty", where=str(path)) from None
    text_col = _pick_column(header, text_column, path, "text")
    label_col = _pick_column(header, label_column, path, "label")
    extras = [_pick_column(header, c, path, "extra") for c in extra_columns]
    ti, li = header.index(text_col), header.index(label_col)
    rows = []
    for record in reader:
        line = reader.line_num
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) != len(header):
            raise UserError(f"row has {len(record)} fields", where=f"{path}:{line}", expected=f"{len(header)} ({delimiter!r}-separated)")
        row = {"text": record[ti], "label": record[li].strip(), "source": f"{path.name}:{line}"}
        row.update({c: record[header.index(c)] for c in extras})
        rows.append(row)
    if not rows:
        raise UserError("data file has a header but no rows", where=str(path))
    return rows


@READERS.register("csv")
def read_csv(path: Path, **opts) -> list[dict]:
    return _read_delimited(path, delimiter=",", **opts)


@READERS.register("tsv")
def read_tsv(path: Path, **opts) -> list[dict]:
    return _read_delimited(path, delimiter="\t", **opts)


@READERS.register("phrasebank")
def read_phrasebank(path: Path, *, encoding: str, **_) -> list[dict]:
    """``sentence@label`` per line (Financial PhraseBank); split on the last '@'."""
    rows = []
    for line_no, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if not line.strip():
            continue
        if "@" not in line:
            raise UserError("line has no '@label' suffix", where=f"{path}:{line_no}", expected="sentence@label")
        text, label = line.rsplit("@", 1)
        rows.append({"text": text.strip(), "label": label.strip(), "source": f"{path.name}:{line_no}"})
    return rows


_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = re.compile(r"<(title|review_text|rating)>\s*(.*?)\s*</\1>", re.S)


@READERS.register("review_xml")
def read_review_xml(path: Path, *, encoding: str, **_) -> list[dict]:
    """Blitzer et al. pseudo-XML reviews; the label is the file stem (positive/negative)."""
    text = read_text(path, encoding)
    rows = []
    for match in _REVIEW.finditer(text):
        fields = dict(_FIELD.findall(match.group(1)))
        if "review_text" not in fields:
            line = text[: match.start()].count("\n") + 1
            raise UserError("review without <review_text>", where=f"{path}:{line}")
        body = " ".join(fields["review_text"].split())
        title = " ".join(fields.get("title", "").split())
        line = text[: match.start()].count("\n") + 1
        rows.append({"text": f"{title}. {body}" if title else body, "label": path.stem, "source": f"{path.name}:{line}"})
    if not rows:
        raise UserError("no <review> records found", where=str(path), expected="Blitzer-style .review pseudo-XML")
    return rows


@READERS.register("jsonl")
def read_jsonl(path: Path, *, encoding: str, text_column, label_column: str, **_) -> list[dict]:
    rows = []
    names = [text_column] if isinstance(text_column, str) else text_column
    expected = f"{{{', '.join(repr(n) for n in names[:1])}: ..., {label_column!r}: ...}}"
    for line_no, record, where in jsonl_objects(read_text(path, encoding), path, expected):
        text_key = next((n for n in names if n in record), None)
        if text_key is None or label_column not in record:
            raise UserError("missing text or label field", where=where, expected=f"keys {names} and {label_column!r}")
        text, label = record[text_key], record[label_column]
        if not isinstance(text, str):
            raise UserError(f"'{text_key}' is a JSON {_json_type(text)}", where=where, expected="a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise UserError(f"'{label_column}' is a JSON {_json_type(label)}", where=where, expected="a string or an integer class id")
        rows.append({"text": text, "label": str(label).strip(), "source": f"{path.name}:{line_no}"})
    return rows


def jsonl_objects(text: str, path, expected: str | None = None) -> Iterator[tuple[int, dict, str]]:
    """(line number, object, "path:line") for each non-blank line of JSON-lines ``text``: a line that does not
    parse, or holds something other than an object, is a UserError naming it (``expected``: what a line holds)."""
    import json

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"not valid JSON ({exc.msg})", where=where, expected=expected) from None
        if not isinstance(record, dict):
            raise UserError(f"a line must be a JSON object, not a JSON {_json_type(record)}", where=where, expected=expected)
        yield number, record, where


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def expand(root: Path, patterns: str | Iterable[str]) -> list[Path]:
    """Paths relative to the data root; globs allowed; a pattern matching nothing is an error."""
    out: list[Path] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        matches = sorted(root.glob(pattern)) if any(ch in pattern for ch in "*?[") else [root / pattern]
        if not matches:
            raise UserError("no file matches", where=str(root / pattern))
        for path in matches:
            if not path.is_file():
                raise UserError("data file not found", where=str(path), expected=f"a file under the data root {root}")
        out.extend(matches)
    return out


def reader_paths(reader, root: Path, patterns) -> list:
    """What a ``files`` entry names for ``reader``: files (``expand``), unless the reader says otherwise
    through an ``expands`` attribute (table readers: folders and hub ids too)."""
    return getattr(reader, "expands", expand)(root, patterns)
