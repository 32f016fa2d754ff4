"""Bulk prediction: a CSV / TSV / JSONL / text file or a folder of images in, JSON lines out.

``mmsft predict RUN --input FILE|FOLDER --output preds.jsonl`` (and ``Run.predict`` in the Python API)
load the run once (``pipeline.load_run``) and call the task kind's own ``predict`` batch by batch, so
the outputs are exactly those of ``mmsft predict RUN TEXT ...``.  Why a module of its own: inputs are
streamed (one batch in memory), a progress bar shows the rows, and the output file is written through
``mmsft.atomic``: it appears complete at the end or not at all (a bad row stops the run with its file
and line, and no half-written output is left).

What is read:

* ``.csv`` / ``.tsv`` (header row) and ``.jsonl`` (one object per line): the input is the text column
  (``--text-column``; default: the task's ``data.text_column`` / ``data.source_column``, else ``text``);
  for generation tasks the task's ``data.field_columns`` present in the row go along (the prompt uses
  them), and a JSONL object with ``messages`` is a conversation; for image tasks the column holds image
  paths, relative to the file's folder;
* ``.txt``: one input per line;
* a folder: every image in it (``.jpg .jpeg .png .bmp .webp``, sorted, sub-folders included), for image tasks.

Each output line is the kind's prediction with the input's id in front: the id column's own name and
value (``--id-column``, default ``id`` when the input has one), else ``row`` (1-based row / line
number) or, for a folder, ``image`` (the path relative to the folder).  The summary (rows, seconds,
rows per second) is returned and printed by the CLI.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .data.readers import jsonl_objects
from .errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")


@dataclass
class Item:
    key: tuple[str, object]  # (id column name, id value) written first in the output row
    input: str  # what the kind's ``predict`` takes: a text, a JSON object as text, or an image path


def takes_images(session) -> bool:
    return session.kind.backbone_family_for(session.cfg) == "image"


def _text_column(session, override: Optional[str]) -> list[str]:
    if override:
        return [override]
    data = session.cfg.data
    named = getattr(data, "text_column", None) or getattr(data, "source_column", None)
    names = [named] if isinstance(named, str) else list(named or [])
    return [*names, *(n for n in ("text", "source", "image", "path") if n not in names)]


class Reader:
    """Items of one input file or folder, with their count (for the progress bar)."""

    def __init__(self, session, path: Path, text_column: Optional[str] = None, id_column: Optional[str] = None):
        self.session, self.path = session, Path(path)
        self.images = takes_images(session)
        self.columns = _text_column(session, text_column)
        self.id_column, self.id_given = id_column or "id", id_column is not None
        self.fields = list(getattr(session.cfg.data, "field_columns", []) or []) if session.kind.name == "generation" else []
        if self.path.is_dir():
            if not self.images:
                raise UserError(f"a folder of images needs an image task, not a {session.kind.name} run", where=str(self.path),
                                expected="a .csv, .tsv, .jsonl or .txt file of inputs")
            self.files = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise UserError("the folder holds no images", where=str(self.path), expected="files ending in " + " ".join(IMAGE_SUFFIXES))
        elif not self.path.is_file():
            raise UserError("input file or folder not found", where=str(self.path))
        elif self.path.suffix.lower() not in TABLE_SUFFIXES:
            raise UserError(f"cannot read '{self.path.name}' as inputs", where=str(self.path),
                            expected="a .csv, .tsv, .jsonl or .txt file, or a folder of images")

    def __len__(self) -> int:
        if self.path.is_dir():
            return len(self.files)
        return sum(1 for _ in self._records())

    def __iter__(self) -> Iterator[Item]:
        if self.path.is_dir():
            for path in self.files:
                yield Item(("image", path.relative_to(self.path).as_posix()), str(path))
            return
        for number, record, where in self._records():
            yield self._item(number, record, where)

    # -- reading ---------------------------------------------------------------------------------
    def _text(self) -> str:
        from .data.readers import read_text

        return read_text(self.path, "utf-8")

    def _records(self) -> Iterator[tuple[int, object, str]]:
        """(1-based row, a dict or a str, "file:line") for every non-empty row."""
        suffix = self.path.suffix.lower()
        text = self._text()
        if suffix == ".txt":
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    yield number, line.strip(), f"{self.path}:{number}"
        elif suffix == ".jsonl":
            yield from jsonl_objects(text, self.path, expected=f'{{"{self.columns[0]}": ...}}')
        else:
            reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames:
                raise UserError("the file has no header row", where=f"{self.path}:1")
            line, row = 1, 0
            for record in reader:
                start, line = line + 1, reader.line_num
                if None in record or any(v is None for v in record.values()):
                    count = len(reader.fieldnames) + len(record.get(None) or []) - sum(v is None for v in record.values())
                    raise UserError(f"row has {count} fields", where=f"{self.path}:{start}",
                                    expected=f"{len(reader.fieldnames)} fields, as the header")
                if all(not str(v).strip() for v in record.values()):
                    continue
                row += 1
                yield row, record, f"{self.path}:{start}"

    def _item(self, number: int, record, where: str) -> Item:
        if isinstance(record, str):  # a .txt line
            return Item(("row", number), self._image(record, where) if self.images else record)
        key = ("row", number)
        if self.id_column in record:
            key = (self.id_column, record[self.id_column])
        elif self.id_given:
            raise UserError(f"no id column '{self.id_column}'", where=where, expected="columns " + ", ".join(map(repr, record)))
        if "messages" in record and not self.images:  # a conversation: the kind parses it
            return Item(key, json.dumps(record, ensure_ascii=False))
        column = next((c for c in self.columns if c in record), None)
        if column is None:
            raise UserError(f"no input column {' or '.join(repr(c) for c in self.columns[:3])}", where=where,
                            expected="columns " + ", ".join(map(repr, record)) + "; name one with --text-column")
        value = record[column]
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"'{column}' is {'empty' if isinstance(value, str) else 'not a string'}", where=where, expected="non-empty text")
        if self.images:
            return Item(key, self._image(value, where))
        fields = {f: str(record[f]) for f in self.fields if f in record}
        return Item(key, json.dumps({"source": value, **fields}, ensure_ascii=False) if fields else value)

    def _image(self, value: str, where: str) -> str:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.path.parent / path
        if not path.is_file():
            raise UserError("image file not found", where=where, expected=f"a path relative to {self.path.parent}")
        return str(path)


def batched(items, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_items(session, inputs: Sequence[str], out_dir: Optional[Path] = None) -> list[dict]:
    """One call of the kind's ``predict`` (what ``mmsft predict RUN INPUT ...`` does per batch)."""
    return session.kind.predict(session.cfg, session.model, session.processor, list(inputs), out_dir=out_dir)


def predict_batches(session, inputs: Sequence[str], batch_size: int, out_dir: Optional[Path] = None,
                    desc: str = "predict") -> list[dict]:
    """``predict_items`` over ``inputs`` in batches of ``batch_size`` with a progress bar (the Python API)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}", where="batch_size")
    out: list[dict] = []
    with tqdm(total=len(inputs), desc=desc, unit="row", disable=len(inputs) <= batch_size, mininterval=1 if sys.stderr.isatty() else 30) as bar:
        for batch in batched(inputs, batch_size):
            out += predict_items(session, batch, out_dir)
            bar.update(len(batch))
    return out


def predict_file(run_dir, source, output, *, batch_size: Optional[int] = None, text_column: Optional[str] = None,
                 id_column: Optional[str] = None, out_dir=None, overrides: Optional[list[str]] = None) -> dict:
    """Stream ``source`` through the run into the JSONL file ``output``; returns the summary."""
    from tqdm.auto import tqdm

    from .atomic import atomic_path
    from .pipeline import load_run

    output = Path(output)
    if output.is_dir():
        raise UserError("--output is a folder", where=str(output), expected="a .jsonl file path")
    if not output.parent.is_dir():
        raise UserError("the output's folder does not exist", where=str(output.parent))
    session = load_run(run_dir, overrides)
    reader = Reader(session, Path(source), text_column, id_column)
    size = batch_size or session.cfg.train.eval_batch_size
    if size < 1:
        raise UserError(f"--batch-size must be >= 1, got {size}", where="--batch-size")
    total = len(reader)  # also checks every row before any model time is spent
    files = Path(out_dir) if out_dir else None
    tick, rows = time.perf_counter(), 0
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as fh, \
            tqdm(total=total, desc="predict", unit="row", mininterval=1 if sys.stderr.isatty() else 30) as bar:
        for batch in batched(reader, size):
            for item, prediction in zip(batch, predict_items(session, [i.input for i in batch], files)):
                fh.write(json.dumps({item.key[0]: item.key[1], **prediction}, ensure_ascii=False, default=str) + "\n")
            rows += len(batch)
            bar.update(len(batch))
        fh.flush()
    seconds = time.perf_counter() - tick
    return {"output": str(output), "rows": rows, "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds, 2) if seconds > 0 else None, "batch_size": size}
