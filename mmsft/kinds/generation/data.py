"""Configuration of generation tasks (the ``data`` block of a ``kind: generation`` task), splits and
predict inputs.

``GenerationData`` (readers in ``readers.py``) owns the data files, the prompt format and template, special tokens, subsets,
the over-long policy and the decoding settings (``data.generate``) used by evaluation and predict.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from ...data.splits import SplitSpec, split_rows
from ...errors import UserError, suggest
from ...generation.generate import GenerateOptions
from ...generation.templates import TEMPLATES, check_messages
from ...paths import data_root
from .prompting import check_prompt, placeholders
from .readers import GEN_READERS, LANGUAGES, read_split

SPLITS = ("all", "train", "validation", "test")


@dataclass
class GenerateSpec(GenerateOptions):
    """Decoding settings for evaluation and ``mmsft predict`` (greedy when num_beams is 1)."""

    single_line: bool = False  # keep the first line of an output (one-sentence tasks such as translation)


@dataclass
class GenerationData:
    format: str  # parallel | csv | jsonl (mmsft.generation.data.GEN_READERS)
    files: dict[str, Union[str, list[str]]]  # split (all|train|validation|test) -> path(s) under the data root
    prompt: str = "{source}"  # format of user turns; fields: source, source_language, target_language, field_columns
    system: Optional[str] = None  # optional system turn (same fields)
    template: str = "role"  # plain | chat | role (mmsft.generation.templates.TEMPLATES)
    special_tokens: bool = True  # add <|system|> <|user|> <|assistant|> <|knowledge|> and resize the embedding
    train_on_prompt: bool = False  # loss on prompt tokens too (default: target tokens only)
    source_lang: str = "en"  # parallel: fills {lang} in file paths
    target_lang: str = "de"
    source_column: str = "source"  # csv / jsonl pairs
    target_column: str = "target"
    field_columns: list[str] = field(default_factory=list)  # csv: extra columns usable in the prompt as {name}
    split: SplitSpec = field(default_factory=SplitSpec)  # for files.all, or to carve validation from train
    stratify_column: Optional[str] = None  # a field to stratify the split by (e.g. intent)
    max_train_samples: Optional[int] = None  # seeded random subsets (order kept)
    max_validation_samples: Optional[int] = None
    max_test_samples: Optional[int] = None
    subset_seed: int = 0
    overlong: Literal["error", "drop"] = "error"  # samples longer than model.max_length: fail, or drop and count
    encoding: str = "utf-8"
    root: Optional[str] = None
    generate: GenerateSpec = field(default_factory=GenerateSpec)

    def validate(self, path: str) -> None:
        if self.format not in GEN_READERS:
            raise UserError(f"unknown data format '{self.format}'.{suggest(self.format, GEN_READERS.names())}",
                            where=f"{path}.format", expected="one of: " + ", ".join(GEN_READERS.names()))
        if self.template not in TEMPLATES:
            raise UserError(f"unknown template '{self.template}'.{suggest(self.template, TEMPLATES.names())}",
                            where=f"{path}.template", expected="one of: " + ", ".join(TEMPLATES.names()))
        if TEMPLATES.get(self.template).needs_special_tokens and not self.special_tokens:
            raise UserError(f"template '{self.template}' needs data.special_tokens: true", where=f"{path}.special_tokens")
        for key in self.files:
            if key not in SPLITS:
                raise UserError(f"unknown split '{key}'.{suggest(key, SPLITS)}", where=f"{path}.files.{key}", expected=", ".join(SPLITS))
        if "all" not in self.files and not ("train" in self.files and "test" in self.files):
            raise UserError("need files.all, or files.train and files.test", where=f"{path}.files")
        check_prompt(self.prompt, f"{path}.prompt")
        if self.system:
            placeholders(self.system, f"{path}.system")
        for name in ("max_train_samples", "max_validation_samples", "max_test_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1 (or null for all)", where=f"{path}.{name}")


@dataclass
class GenData:
    splits: dict[str, list[dict]]
    stats: dict = field(default_factory=dict)


def _subset(rows: list[dict], limit: Optional[int], seed: int) -> list[dict]:
    if not limit or len(rows) <= limit:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def build_splits(spec: GenerationData) -> dict[str, list[dict]]:
    root = Path(spec.root).expanduser() if spec.root else data_root()
    if "all" in spec.files:
        rows = read_split(spec, root, spec.files["all"])
        for row in rows:
            row["label"] = row["fields"].get(spec.stratify_column, "") if spec.stratify_column else ""
        fractions = {"train": spec.split.train, "validation": spec.split.validation, "test": spec.split.test}
        splits = split_rows(rows, fractions, spec.split.seed, stratify=bool(spec.stratify_column))
        for row in rows:
            row.pop("label")
    else:
        splits = {name: read_split(spec, root, spec.files[name]) for name in ("train", "validation", "test") if name in spec.files}
        if "validation" not in splits:
            share = spec.split.validation / max(spec.split.train + spec.split.validation, 1e-9)
            splits.update(split_rows(splits["train"], {"train": 1 - share, "validation": share}, spec.split.seed, stratify=False))
    for name in ("train", "validation", "test"):
        if not splits.get(name):
            raise UserError(f"split '{name}' is empty", where="data.files")
    limits = {"train": spec.max_train_samples, "validation": spec.max_validation_samples, "test": spec.max_test_samples}
    return {name: _subset(splits[name], limits[name], spec.subset_seed) for name in ("train", "validation", "test")}


def parse_input(text: str, index: int, spec: GenerationData) -> dict:
    """A predict input: plain text (the source), or a JSON object with fields or messages."""
    where = f"input {index + 1}"
    fields = {}
    if spec.format == "parallel":  # the language names the prompt may use
        fields = {"source_language": LANGUAGES.get(spec.source_lang, spec.source_lang),
                  "target_language": LANGUAGES.get(spec.target_lang, spec.target_lang)}
    if not text.lstrip().startswith("{"):
        if not text.strip():
            raise UserError("empty input", where=where)
        return {"messages": [{"role": "user", "content": text.strip()}], "fields": fields, "source": where}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"input looks like JSON but is not valid ({exc.msg})", where=where) from None
    if not isinstance(obj, dict):
        raise UserError("JSON input must be an object", where=where)
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise UserError("'messages' must be a list of {role, content} objects", where=where)
        messages = [{"role": m.get("role"), "content": str(m.get("content", "")).strip()} for m in messages]
        check_messages([*messages, {"role": "assistant", "content": "?"}], where)  # roles known, nothing empty
        if not messages or messages[-1]["role"] == "assistant":
            raise UserError("the conversation is empty or already ends with an assistant turn", where=where, expected="a last user turn to answer")
        fields.update({k: str(v) for k, v in obj.items() if k != "messages"})
        return {"messages": messages, "fields": fields, "source": where}
    source = obj.get("source", obj.get(spec.source_column))
    if not isinstance(source, str) or not source.strip():
        raise UserError("JSON input lacks a 'source' text", where=where, expected='{"source": "...", "<field>": "..."}')
    fields.update({k: str(v) for k, v in obj.items() if k not in ("source", spec.source_column)})
    return {"messages": [{"role": "user", "content": source.strip()}], "fields": fields, "source": where}
