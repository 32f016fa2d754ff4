"""Knowledge bases: entries ``{id, text, title?, aliases?, fields...}`` read from JSONL, CSV or a folder
of text / Markdown documents (chunked with overlap), checked before anything is built.

Every bad input is a ``UserError`` naming the file and line: a file that does not parse, an entry
without text, a duplicate id, an empty KB.  ``sources`` records the data rows an entry was derived
from (KBs built from a task's training split), which is what leakage exclusion compares against.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..data.readers import jsonl_objects
from ..errors import UserError
from ..registry import Registry

RESERVED = ("id", "text", "title", "aliases")
DOCUMENT_SUFFIXES = (".txt", ".md")


@dataclass
class Entry:
    id: str
    text: str
    title: str = ""
    aliases: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # data rows (``source`` = file:line) this entry was made from

    @property
    def passage(self) -> str:
        """What a model reads: the title (when the text does not start with it) and the text."""
        return f"{self.title}: {self.text}" if self.title and not self.text.startswith(self.title) else self.text

    def record(self) -> dict:
        return {"id": self.id, "title": self.title, "text": self.text, "aliases": list(self.aliases), "fields": self.fields}


class KnowledgeBase:
    """A named, ordered list of entries with unique ids and a content hash (what an index is built from)."""

    def __init__(self, name: str, entries: list[Entry], origin: str = ""):
        self.name, self.entries, self.origin = name, entries, origin or name
        if not entries:
            raise UserError("the knowledge base has no entries", where=self.origin, expected="at least one {id, text} entry")
        self.position = {e.id: i for i, e in enumerate(entries)}

    def __len__(self) -> int:
        return len(self.entries)

    @cached_property
    def content_hash(self) -> str:
        """sha256 of every entry's id, title, text, aliases and fields, in order."""
        digest = hashlib.sha256()
        for entry in self.entries:
            digest.update(json.dumps(entry.record(), sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n")
        return digest.hexdigest()

    def search_texts(self) -> list[str]:
        return [e.passage for e in self.entries]


# -- checking entries -----------------------------------------------------------------------------
def _aliases(value, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise UserError("aliases must be a list of strings (CSV: separated by '|')", where=where)
    return tuple(a.strip() for a in value if a.strip())


def make_entry(raw: dict, where: str) -> Entry:
    """One raw record -> ``Entry``; ``where`` is file:line for the errors."""
    entry_id = raw.get("id")
    if entry_id is None or str(entry_id).strip() == "":
        raise UserError("entry has no id", where=where, expected="an 'id' key")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"entry '{entry_id}' has no text", where=where, expected="a non-empty 'text'")
    title = raw.get("title") or ""
    if not isinstance(title, str):
        raise UserError(f"entry '{entry_id}': title must be a string", where=where)
    fields = {k: v for k, v in raw.items() if k not in RESERVED}
    return Entry(str(entry_id).strip(), " ".join(text.split()), " ".join(title.split()), _aliases(raw.get("aliases"), where), fields)


def unique_entries(items: Iterable[tuple[Entry, str]]) -> list[Entry]:
    """Entries in order; a repeated id fails naming both places."""
    seen: dict[str, str] = {}
    out = []
    for entry, where in items:
        if entry.id in seen:
            raise UserError(f"duplicate id '{entry.id}' (first at {seen[entry.id]})", where=where, expected="unique ids")
        seen[entry.id] = where
        out.append(entry)
    return out


def _read_text(path: Path) -> str:
    """UTF-8 text; an empty file or a byte that does not decode names the file (and line)."""
    from ..data.readers import read_text

    return read_text(path, "utf-8")


# -- formats --------------------------------------------------------------------------------------
#: file suffix (or "folder") -> reader(path, chunker) -> [(entry, where)]
KB_FORMATS: Registry[Callable] = Registry("knowledge-base format")


@KB_FORMATS.register("jsonl")
def read_jsonl(path: Path, chunker=None) -> list[tuple[Entry, str]]:
    out = []
    for _, raw, where in jsonl_objects(_read_text(path), path, expected='one {"id": ..., "text": ...} object per line'):
        out.append((make_entry(raw, where), where))
    return out


@KB_FORMATS.register("csv")
def read_csv(path: Path, chunker=None) -> list[tuple[Entry, str]]:
    reader = csv.reader(_read_text(path).splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise UserError("the CSV file is empty", where=str(path), expected="a header with id and text columns") from None
    except csv.Error as exc:
        raise UserError(f"CSV does not parse ({exc})", where=f"{path}:1") from None
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise UserError(f"the header lacks {missing}", where=f"{path}:1", expected="columns id, text (title, aliases and fields optional)")
    out = []
    line = 1
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            if not any(v.strip() for v in record):
                continue
            where = f"{path}:{start}"
            if len(record) != len(header):
                raise UserError(f"row has {len(record)} fields", where=where, expected=f"{len(header)} (comma-separated)")
            out.append((make_entry(dict(zip(header, record)), where), where))
    except csv.Error as exc:
        raise UserError(f"CSV does not parse ({exc})", where=f"{path}:{line + 1}") from None
    return out


@KB_FORMATS.register("folder")
def read_folder(path: Path, chunker=None) -> list[tuple[Entry, str]]:
    """Every .txt / .md file below ``path`` (sorted), cut into overlapping passages by ``chunker``."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    if not files:
        raise UserError("the folder holds no .txt or .md documents", where=str(path))
    out = []
    for file in files:
        text = _read_text(file)
        rel = file.relative_to(path).as_posix()
        title = _title(text, file)
        for i, chunk in enumerate(chunker(text) if chunker else [text]):
            out.append((Entry(f"{rel}#{i}", " ".join(chunk.split()), title), f"{file}:{text[: text.find(chunk[:20])].count(chr(10)) + 1}"))
    return out


def _title(text: str, file: Path) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("#").strip()[:120] if line.lstrip().startswith("#") else file.stem
    return file.stem


def chunk_text(text: str, tokenizer, tokens: int, overlap: int) -> list[str]:
    """Windows of ``tokens`` tokens of ``tokenizer``, ``overlap`` shared, cut at token offsets of the
    original text (nothing is lost to decoding)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if not offsets:
        return [text]
    out, step = [], tokens - overlap
    for start in range(0, len(offsets), step):
        window = offsets[start : start + tokens]
        out.append(text[window[0][0] : window[-1][1]])
        if start + tokens >= len(offsets):
            break
    return out


def read_kb_file(path: Path, chunker: Optional[Callable] = None) -> KnowledgeBase:
    """A KB from a .jsonl / .csv file or a folder of documents."""
    fmt = "folder" if path.is_dir() else path.suffix.lower().lstrip(".")
    if fmt not in KB_FORMATS:
        raise UserError(f"unknown knowledge-base format '{path.suffix}'", where=str(path),
                        expected="a .jsonl or .csv file, or a folder of .txt / .md documents")
    return KnowledgeBase(path.stem if path.is_file() else path.name, unique_entries(KB_FORMATS.get(fmt)(path, chunker)), str(path))
