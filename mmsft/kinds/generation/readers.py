"""Readers for generation data, one per format, each returning conversation rows.

A row is ``{"messages": [{"role", "content"}, ...], "fields": {name: str}, "source": "file:line"}``.
``fields`` feed the prompt format (``{source}`` is the user text; e.g. ``{intent}``, ``{category}``,
``{source_language}``).  Every error names the file and line and nothing is written before reading
succeeds.

* ``parallel``: line-aligned text files, one per language (``{lang}`` in the path is replaced by
  ``source_lang`` / ``target_lang``): different line counts and empty lines are errors.
* ``csv``: one row per pair (``source_column`` -> ``target_column``), ``field_columns`` kept.
* ``jsonl``: ``{"messages": [...]}`` conversations (loss on every assistant turn), or a
  ``source_column``/``target_column`` pair per line; other string keys become fields.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

from ...data.readers import column_list, expand, jsonl_objects, read_text
from ...errors import UserError
from ...generation.templates import check_messages
from ...registry import Registry

GEN_READERS: Registry[Callable[..., list[dict]]] = Registry("generation data format", locations=["mmsft.kinds.generation.table_readers"])

LANGUAGES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian",
             "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "zh": "Chinese", "ja": "Japanese"}


def clean(text: str) -> str:
    """Trimmed, with Windows line ends made plain (Bitext replies use CRLF inside quoted fields)."""
    return text.replace("\r\n", "\n").strip()


def pair(source: str, target: str, fields: dict, where: str) -> dict:
    return {"messages": [{"role": "user", "content": clean(source)}, {"role": "assistant", "content": clean(target)}],
            "fields": fields, "source": where}


def _lines(path: Path, encoding: str) -> list[str]:
    text = read_text(path, encoding)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]


@GEN_READERS.register("parallel")
def read_parallel(root: Path, pattern: str, spec) -> list[dict]:
    if "{lang}" not in pattern:
        raise UserError(f"parallel file pattern '{pattern}' lacks '{{lang}}'", where="data.files",
                        expected="a path such as multi30k/raw/train.{lang}")
    rows = []
    src_paths = expand(root, pattern.replace("{lang}", spec.source_lang))
    tgt_paths = expand(root, pattern.replace("{lang}", spec.target_lang))
    if len(src_paths) != len(tgt_paths):
        raise UserError(f"{len(src_paths)} source files but {len(tgt_paths)} target files match", where=str(root / pattern))
    fields = {"source_language": LANGUAGES.get(spec.source_lang, spec.source_lang),
              "target_language": LANGUAGES.get(spec.target_lang, spec.target_lang)}
    for src_path, tgt_path in zip(src_paths, tgt_paths):
        src, tgt = _lines(src_path, spec.encoding), _lines(tgt_path, spec.encoding)
        if len(src) != len(tgt):
            longer, n = (src_path, len(tgt)) if len(src) > len(tgt) else (tgt_path, len(src))
            raise UserError(f"parallel files are misaligned: {src_path.name} has {len(src)} lines, {tgt_path.name} has {len(tgt)}; "
                            "this line has no counterpart", where=f"{longer}:{n + 1}", expected="line-aligned files of equal length")
        for i, (s, t) in enumerate(zip(src, tgt), 1):
            for path, text in ((src_path, s), (tgt_path, t)):
                if not text.strip():
                    raise UserError("empty line in a parallel file", where=f"{path}:{i}", expected="one non-empty sentence per line")
            rows.append(pair(s.strip(), t.strip(), dict(fields), f"{src_path.name}:{i}"))
    return rows


@GEN_READERS.register("csv")
def read_csv_pairs(root: Path, pattern: str, spec) -> list[dict]:
    rows = []
    for path in expand(root, pattern):
        reader = csv.reader(io.StringIO(read_text(path, spec.encoding)))
        header = next(reader, None) or []
        wanted = [spec.source_column, spec.target_column, *spec.field_columns]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise UserError(f"missing column(s) {missing}", where=f"{path}:1", expected="columns " + column_list(header))
        col = {name: header.index(name) for name in wanted}
        line = reader.line_num
        for record in reader:
            start, line = line + 1, reader.line_num  # quoted fields may span lines: report the first
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise UserError(f"row has {len(record)} fields", where=f"{path}:{start}", expected=f"{len(header)} (comma-separated)")
            source, target = record[col[spec.source_column]].strip(), record[col[spec.target_column]].strip()
            for name, text in ((spec.source_column, source), (spec.target_column, target)):
                if not text:
                    raise UserError(f"empty {name}", where=f"{path}:{start}", expected="non-empty text")
            fields = {c: record[col[c]].strip() for c in spec.field_columns}
            rows.append(pair(source, target, fields, f"{path.name}:{start}"))
    return rows


@GEN_READERS.register("jsonl")
def read_jsonl_conversations(root: Path, pattern: str, spec) -> list[dict]:
    rows = []
    for path in expand(root, pattern):
        for i, record, where in jsonl_objects(read_text(path, spec.encoding), path):
            fields = {k: v for k, v in record.items() if isinstance(v, str) and k not in (spec.source_column, spec.target_column)}
            if "messages" in record:
                messages = record["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    raise UserError("'messages' must be a list of {role, content} objects", where=where)
                messages = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
                check_messages(messages, where)
                if messages[-1]["role"] != "assistant":
                    raise UserError("conversation does not end with an assistant turn", where=where, expected="the last message to be the reply to learn")
                rows.append({"messages": [{**m, "content": clean(m["content"])} for m in messages], "fields": fields, "source": f"{path.name}:{i}"})
                continue
            source, target = record.get(spec.source_column), record.get(spec.target_column)
            for name, text in ((spec.source_column, source), (spec.target_column, target)):
                if not isinstance(text, str) or not text.strip():
                    raise UserError(f"missing or empty '{name}'", where=where, expected=f"'messages', or '{spec.source_column}' and '{spec.target_column}' strings")
            rows.append(pair(source.strip(), target.strip(), fields, f"{path.name}:{i}"))
    return rows


def read_split(spec, root: Path, patterns) -> list[dict]:
    reader = GEN_READERS.get(spec.format)
    rows = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        rows += reader(root, pattern, spec)
    return rows
