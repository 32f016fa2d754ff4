"""Sequence-level KD data (Kim & Rush 2016): the student trains on the teacher's decoded outputs.

The teacher run decodes every training prompt of the student's task -- through its own prompt,
template, tokenizer and decoding settings (``kind.predict``), which is why this works across
vocabularies (SmolLM2 and Gemma-3 tokenize differently).  The outputs replace the training targets;
validation and test keep the references.  The data is written in the task's own format
(``parallel`` line files, ``csv``, ``jsonl``), so the student run's ``predict`` reads inputs exactly
as the task's.  Decoding is chunked and appended to ``decoded.jsonl`` as it goes: an interrupted
distillation resumes where decoding stopped.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import UserError

CHUNK = 64


def _prompt_input(row: dict) -> str:
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return json.dumps({"messages": messages[:last], **row.get("fields", {})}, ensure_ascii=False)


def decode(teacher, rows: list[dict], partial: Path) -> tuple[list[str], dict]:
    """The teacher's output for every row (empty outputs fall back to the reference, counted)."""
    done: dict[int, str] = {}
    if partial.is_file():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            done[int(record["i"])] = record["output"]
    todo = [i for i in range(len(rows)) if i not in done]
    resumed = len(done)
    with partial.open("a", encoding="utf-8") as fh:
        chunks = [todo[k:k + CHUNK] for k in range(0, len(todo), CHUNK)]
        for chunk in tqdm(chunks, desc="teacher decodes train", unit="chunk", mininterval=10):
            outputs = teacher.kind.predict(teacher.cfg, teacher.model, teacher.processor, [_prompt_input(rows[i]) for i in chunk])
            for i, out in zip(chunk, outputs):
                done[i] = out["output"]
                fh.write(json.dumps({"i": i, "output": out["output"], "stopped_by_eos": out["stopped_by_eos"]}, ensure_ascii=False) + "\n")
            fh.flush()
    targets, fallback = [], 0
    for i, row in enumerate(rows):
        text = " ".join(done[i].split()) if done[i] else ""
        if not text:
            fallback += 1
            text = row["messages"][-1]["content"]
        targets.append(text)
    return targets, {"decoded": len(rows), "resumed_from": resumed, "empty_outputs_replaced_by_reference": fallback}


def _with_target(row: dict, target: str) -> dict:
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["content"] = target
    return {**row, "messages": messages}


def write_data(spec, splits: dict[str, list[dict]], folder: Path) -> dict:
    """Write ``splits`` (train already carrying the teacher's targets) in the task's format into
    ``folder``; returns the ``data`` overrides that point the task at it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in splits.items():
        if spec.format in ("parallel", "csv") and any(len(r["messages"]) != 2 for r in rows):
            raise UserError(f"a {spec.format} task has one-turn pairs only", where="data.format")
        if spec.format == "parallel":
            for side, lang in ((0, spec.source_lang), (1, spec.target_lang)):
                lines = [" ".join(r["messages"][side]["content"].split()) for r in rows]
                (folder / f"{name}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
            files[name] = f"{name}.{{lang}}"
        elif spec.format == "csv":
            with (folder / f"{name}.csv").open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([spec.source_column, spec.target_column, *spec.field_columns])
                for r in rows:
                    writer.writerow([r["messages"][0]["content"], r["messages"][1]["content"], *(r["fields"].get(c, "") for c in spec.field_columns)])
            files[name] = f"{name}.csv"
        else:
            with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps({"messages": r["messages"], **r.get("fields", {})}, ensure_ascii=False) + "\n")
            files[name] = f"{name}.jsonl"
    return {"root": str(folder.resolve()), "files": files, "encoding": "utf-8",
            "max_train_samples": None, "max_validation_samples": None, "max_test_samples": None}


def build(teacher, spec, splits: dict[str, list[dict]], folder: Path) -> tuple[dict, dict]:
    """Decode, write; returns (data overrides, record)."""
    folder.mkdir(parents=True, exist_ok=True)
    targets, record = decode(teacher, splits["train"], folder / "decoded.jsonl")
    data = {**splits, "train": [_with_target(r, t) for r, t in zip(splits["train"], targets)]}
    overrides = write_data(spec, data, folder / "data")
    return overrides, record
