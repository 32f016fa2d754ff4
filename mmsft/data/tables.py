"""Tables from the Hugging Face ecosystem as task data: ``data.format: hf`` and ``data.format: parquet``.

Why: people keep their data as ``datasets`` folders (``save_to_disk``), parquet / arrow / JSON files
or hub datasets, and converting them to CSV first loses types (class labels) and costs a copy.
``open_table(ref)`` turns any of them into one ``datasets.Dataset``:

* a ``save_to_disk`` folder (``load_from_disk``; a ``DatasetDict`` folder must have one split, or name
  it: ``folder/train``), or its ``state.json`` / ``dataset_info.json`` / ``dataset_dict.json`` file;
* a local ``.parquet`` / ``.arrow`` / ``.json`` / ``.jsonl`` / ``.csv`` / ``.tsv`` file, or a folder of
  them (``load_dataset`` with the matching builder; ``.arrow`` is memory-mapped, parquet read in place);
* ``hf:<owner>/<name>`` or ``hf:<owner>/<name>:<split>``: a hub dataset, only when the hub answers --
  offline it fails at once, as a hub backbone does (``mmsft.zoo.base.hub_reachable``).

Columns are mapped as for CSV (``text_column`` may list candidates, the first present is used;
``label_column``); a ``ClassLabel`` column gives its names, other labels pass as strings for
``data.label_map``.  Errors name the file (and the row, counted from 1) and what was expected.
The readers register into ``READERS`` (text classification); ``mmsft.kinds.generation.table_readers``
reuses ``open_table`` for generation pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..errors import UserError
from .readers import READERS, column_list, expand

HUB_PREFIX = "hf:"
# file suffix -> datasets builder name
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv"}
_SAVED_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")  # files save_to_disk writes


def open_table(ref: Union[str, Path], split: str | None = None):
    """``ref`` (see the module docstring) as a ``datasets.Dataset``; ``split`` picks one of a ``DatasetDict``."""
    text = str(ref)
    if text.startswith(HUB_PREFIX) or f"/{HUB_PREFIX}" in text:  # a hub id (also when joined under a data root)
        return _hub(text[text.index(HUB_PREFIX) + len(HUB_PREFIX):], split)
    path = Path(ref)
    if path.is_file() and path.name in _SAVED_MARKERS:
        path = path.parent
    if path.is_dir():
        if any((path / m).is_file() for m in _SAVED_MARKERS):
            return _pick(_guard(path, lambda: _load_from_disk(path)), split, path)
        return _pick(_guard(path, lambda: _load_folder(path)), split, path)
    if not path.is_file():
        raise UserError("data file or folder not found", where=str(path),
                        expected="a datasets folder (save_to_disk), a .parquet/.arrow/.json/.jsonl/.csv file, or hf:<hub id>")
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise UserError(f"cannot tell the table format of '{path.name}'", where=str(path),
                        expected="a suffix among " + ", ".join(BUILDERS) + ", or a save_to_disk folder")
    return _guard(path, lambda: _load_file(path, builder))


def _load_from_disk(path: Path):
    from datasets import load_from_disk

    return load_from_disk(str(path))


def _load_file(path: Path, builder: str):
    from datasets import Dataset

    if builder == "arrow":
        return Dataset.from_file(str(path))  # memory-mapped, no copy
    if builder == "parquet":
        import pyarrow.parquet as pq

        return Dataset(pq.read_table(str(path)))
    return _load_builder(builder, [str(path)], delimiter="\t" if path.suffix.lower() == ".tsv" else None)


def _load_folder(path: Path):
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS)
    builders = {BUILDERS[p.suffix.lower()] for p in files}
    if len(builders) != 1:
        raise UserError(f"the folder holds {'no data files' if not builders else 'files of several formats'}",
                        where=str(path), expected="files of one format (.parquet, .arrow, .json(l), .csv), or a save_to_disk folder")
    builder = builders.pop()
    if builder in ("arrow", "parquet"):
        from datasets import concatenate_datasets

        return concatenate_datasets([_load_file(p, builder) for p in files])
    return _load_builder(builder, [str(p) for p in files], delimiter="\t" if files[0].suffix.lower() == ".tsv" else None)


def _load_builder(builder: str, files: list[str], delimiter=None):
    from datasets import load_dataset

    from ..paths import cache_dir

    kwargs = {"delimiter": delimiter} if delimiter else {}
    return load_dataset(builder, data_files=files, split="train", cache_dir=str(cache_dir() / "hf-datasets"), **kwargs)


def _hub(name: str, split: str | None):
    from ..zoo.base import hub_reachable

    name, _, named_split = name.partition(":")
    if not name.strip():
        raise UserError(f"bad hub dataset id '{name}'", expected="hf:<owner>/<name> or hf:<owner>/<name>:<split>")
    if not hub_reachable():
        raise UserError(f"hub dataset '{name}' needs the Hugging Face hub, which cannot be reached (offline)",
                        where=f"{HUB_PREFIX}{name}", expected="a local datasets folder or parquet/arrow/JSON file, or a hub id when online")
    from datasets import load_dataset

    from ..paths import cache_dir

    data = _guard(Path(f"{HUB_PREFIX}{name}"), lambda: load_dataset(name, cache_dir=str(cache_dir() / "hf-datasets")))
    return _pick(data, named_split or split, f"{HUB_PREFIX}{name}")


def _pick(data, split: str | None, where):
    """A ``Dataset`` from a ``Dataset`` or ``DatasetDict`` (the named split, or the only one)."""
    if not hasattr(data, "keys"):
        return data
    names = list(data.keys())
    if split is None and len(names) == 1:
        return data[names[0]]
    if split not in names:
        raise UserError(f"the dataset has splits {', '.join(names)}" + (f", not '{split}'" if split else ""), where=str(where),
                        expected=f"one split: {where}/<split> for a folder, hf:<id>:<split> for the hub")
    return data[split]


def _guard(where: Path, load):
    """Run a ``datasets`` / ``pyarrow`` loader; what they raise for a damaged file becomes one UserError."""
    try:
        return load()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - ArrowInvalid, DatasetGenerationError, JSONDecodeError, ...
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the table: {message}", where=str(where),
                        expected="a readable datasets folder or parquet / arrow / JSON / CSV file") from None


def pick_column(ds, wanted: Union[str, list[str]], where: str, role: str) -> str:
    """The first of ``wanted`` that ``ds`` has (CSV's column rule), or a UserError listing its columns."""
    for name in [wanted] if isinstance(wanted, str) else list(wanted):
        if name in ds.column_names:
            return name
    options = [wanted] if isinstance(wanted, str) else list(wanted)
    raise UserError(f"missing {role} column {' or '.join(repr(o) for o in options)}", where=where,
                    expected="columns " + column_list(list(ds.column_names)))


def strings(ds, column: str, where: str, *, allow_int: bool = False) -> list[str]:
    """A column as strings: ``ClassLabel`` ids become their names; other types fail naming the row."""
    feature = ds.features[column]
    names = getattr(feature, "names", None)
    out = []
    for i, value in enumerate(ds[column], 1):
        if names is not None and isinstance(value, int) and not isinstance(value, bool):
            value = names[value]
        elif isinstance(value, bool) or not (isinstance(value, str) or (allow_int and isinstance(value, int))):
            kind = "null" if value is None else type(value).__name__
            raise UserError(f"'{column}' is a {kind}", where=f"{where}:{i}",
                            expected="a string or an integer class id" if allow_int else "a string")
        out.append(str(value))
    return out


def table_refs(root: Path, patterns) -> list[Union[Path, str]]:
    """What a ``files`` entry names for a table reader: hub ids as they are, folders (``save_to_disk``,
    ``folder/<split>``, parquet shards) whole, files by name or glob as for every other reader."""
    refs: list[Union[Path, str]] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if pattern.startswith(HUB_PREFIX):
            refs.append(pattern)
        elif not any(ch in pattern for ch in "*?[") and (root / pattern).is_dir():
            refs.append(root / pattern)
        else:
            refs.extend(expand(root, pattern))
    return refs


def table_rows(path, *, text_column, label_column: str, **_) -> list[dict]:
    """``{"text", "label", "source"}`` rows of a table (the text-classification reader contract)."""
    ds = open_table(path)
    where = str(path)
    if not len(ds):
        raise UserError("the table has no rows", where=where)
    text_col = pick_column(ds, text_column, where, "text")
    label_col = pick_column(ds, label_column, where, "label")
    texts = strings(ds, text_col, where)
    labels = strings(ds, label_col, where, allow_int=True)
    name = Path(str(path)).name
    return [{"text": t, "label": l.strip(), "source": f"{name}:{i}"} for i, (t, l) in enumerate(zip(texts, labels), 1)]


@READERS.register("hf")
def read_hf(path, **opts) -> list[dict]:
    """A datasets folder, a parquet / arrow / JSON / CSV file, or ``hf:<hub id>`` (see ``open_table``)."""
    return table_rows(path, **opts)


read_hf.expands = table_refs  # how its ``files`` entries become paths (other readers: ``expand``, files only)


@READERS.register("parquet")
def read_parquet(path, **opts) -> list[dict]:
    if Path(str(path)).suffix.lower() != ".parquet":
        raise UserError("not a .parquet file", where=str(path), expected="data.format: hf for other tables")
    return table_rows(path, **opts)
