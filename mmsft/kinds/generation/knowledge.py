"""Knowledge for generation (``knowledge:`` in the task spec): ``retrieved_segments`` puts the top-k
passages of the run's KB into the prompt as a knowledge turn just before the last user turn (the
templates render it: ``<|knowledge|>`` with role tokens, a system turn with a chat template), cut to
``knowledge.retrieval.budget`` tokens.  The query is the last user turn as the data has it; a
training row never retrieves itself (``task_replies``: its own reply) and held-out rows are never in
reach.  Evaluation scores the outputs' groundedness against the passages and the input.
"""
from __future__ import annotations

from typing import Optional

from ...knowledge.inject import TaskKnowledge, fit_passages, open_knowledge
from .prompting import last_turns

GROUNDEDNESS = ("groundedness", "hallucinated_placeholders", "knowledge_f1")  # reported for every run with a KB


def rows_view(splits: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """{split: [{text: last user turn, reply: last assistant turn, fields, source}]}."""
    out = {}
    for split, rows in splits.items():
        out[split] = []
        for row in rows:
            user, reply = last_turns(row)
            out[split].append({"text": user, "reply": reply, "fields": row.get("fields") or {}, "source": row.get("source", "")})
    return out


def task_knowledge(cfg, splits: dict[str, list[dict]]) -> Optional[TaskKnowledge]:
    return open_knowledge(cfg, rows_view(splits)) if cfg.knowledge else None


def passages_for(cfg, know: TaskKnowledge, tokenizer, rows: list[dict], cache: bool = True) -> tuple[list[list[str]], list]:
    """(passages cut to the budget, hits) per row; ``rows`` are data rows or predict inputs."""
    views = [{"text": last_turns(r)[0], "source": r.get("source", "")} for r in rows]
    hits = know.search(views, cache=cache)
    return [fit_passages(know.passages(h), tokenizer, cfg.knowledge.retrieval.budget, reserve=1) for h in hits], hits


def with_knowledge(messages: list[dict], passages: list[str]) -> list[dict]:
    """The conversation with a knowledge turn before its last user turn (unchanged without passages)."""
    if not passages:
        return messages
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [*messages[:last], {"role": "knowledge", "content": "\n".join(passages)}, *messages[last:]]
