"""Reading the runner's JSON-lines logs (``metrics.jsonl``, ``test_predictions.jsonl``) tolerantly: a line
torn by a crash mid-write, or one that holds no object, is skipped rather than fatal -- a log is a record to
show, not input to validate (task data goes through ``mmsft.data.readers.jsonl_objects``, which names bad lines)."""
from __future__ import annotations

import json
from typing import Iterable, Iterator


def json_records(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON objects among ``lines``, in order."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
