"""Generation pairs from TSV files and from Hugging Face tables (``data.format: tsv | hf | parquet``).

Why: parallel corpora and instruction sets commonly ship as TSV (OPUS, Tatoeba, Anki exports: often
without a header) or as ``datasets`` folders / parquet files; these readers take them as they are.

* ``tsv``: tab-separated, no quoting (a tab or newline inside a field is not possible in TSV).  The
  first line is a header when it names both ``source_column`` and ``target_column``; otherwise the
  file has no header and its columns are, in order, source, target, then ``field_columns``.
* ``hf`` / ``parquet``: any table ``mmsft.data.tables.open_table`` reads (a ``save_to_disk`` folder, a
  parquet / arrow / JSON / CSV file, ``hf:<hub id>[:<split>]`` when online); columns mapped by
  ``source_column`` / ``target_column`` / ``field_columns`` as for CSV.

Rows are the generation readers' conversation rows (``readers.pair``); every error names the file
and line (TSV) or row (tables).  Registered into ``GEN_READERS`` through its ``locations``.
"""
from __future__ import annotations

from pathlib import Path

from ...data.readers import column_list, expand, read_text
from ...data.tables import open_table, pick_column, strings, table_refs
from ...errors import UserError
from .readers import GEN_READERS, pair


@GEN_READERS.register("tsv")
def read_tsv_pairs(root: Path, pattern: str, spec) -> list[dict]:
    rows = []
    wanted = [spec.source_column, spec.target_column, *spec.field_columns]
    for path in expand(root, pattern):
        lines = read_text(path, spec.encoding).split("\n")
        first = lines[0].rstrip("\r").split("\t")
        header = first if spec.source_column in first and spec.target_column in first else None
        if header is not None:
            missing = [c for c in wanted if c not in header]
            if missing:
                raise UserError(f"missing column(s) {missing}", where=f"{path}:1", expected="columns " + column_list(header))
            col, width = {name: header.index(name) for name in wanted}, len(header)
        else:
            col, width = {name: i for i, name in enumerate(wanted)}, None
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if (header is not None and number == 1) or not line.strip():
                continue
            where = f"{path}:{number}"
            fields = line.split("\t")
            if width is not None and len(fields) != width:
                raise UserError(f"row has {len(fields)} fields", where=where, expected=f"{width} (tab-separated, as the header)")
            if width is None and len(fields) < len(wanted):
                raise UserError(f"row has {len(fields)} fields", where=where,
                                expected=f"at least {len(wanted)} tab-separated: source, target" + "".join(f", {c}" for c in spec.field_columns)
                                + f" (or a header naming '{spec.source_column}' and '{spec.target_column}')")
            source, target = fields[col[spec.source_column]].strip(), fields[col[spec.target_column]].strip()
            for name, text in ((spec.source_column, source), (spec.target_column, target)):
                if not text:
                    raise UserError(f"empty {name}", where=where, expected="non-empty text")
            rows.append(pair(source, target, {c: fields[col[c]].strip() for c in spec.field_columns}, f"{path.name}:{number}"))
    return rows


def _table_pairs(ref, spec, name: str) -> list[dict]:
    ds = open_table(ref)
    where = str(ref)
    columns = [pick_column(ds, c, where, role) for c, role in
               ((spec.source_column, "source"), (spec.target_column, "target"), *((f, "field") for f in spec.field_columns))]
    values = [strings(ds, c, where, allow_int=i >= 2) for i, c in enumerate(columns)]
    rows = []
    for i, (source, target, *extra) in enumerate(zip(*values), 1):
        for column, text in ((columns[0], source), (columns[1], target)):
            if not text.strip():
                raise UserError(f"empty {column}", where=f"{where}:{i}", expected="non-empty text")
        rows.append(pair(source, target, {c: v.strip() for c, v in zip(spec.field_columns, extra)}, f"{name}:{i}"))
    if not rows:
        raise UserError("the table has no rows", where=where)
    return rows


@GEN_READERS.register("hf")
def read_hf_pairs(root: Path, pattern: str, spec) -> list[dict]:
    return [row for ref in table_refs(root, pattern)
            for row in _table_pairs(ref, spec, ref if isinstance(ref, str) else ref.name)]


read_hf_pairs.expands = table_refs  # what ``mmsft data check`` lists as the task's files


@GEN_READERS.register("parquet")
def read_parquet_pairs(root: Path, pattern: str, spec) -> list[dict]:
    paths = expand(root, pattern)
    for path in paths:
        if path.suffix.lower() != ".parquet":
            raise UserError("not a .parquet file", where=str(path), expected="data.format: hf for other tables")
    return [row for path in paths for row in _table_pairs(path, spec, path.name)]
