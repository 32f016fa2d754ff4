"""The prompt format (``data.prompt``, e.g. ``"Translate {source_language} to {target_language}: {source}"``).

It is applied to every user turn with ``{source}`` = the turn's text and the row's fields (intent,
category, languages...).  ``data.system``, when set, is formatted the same way and becomes a system
turn.  A format without ``{source}``, or naming a field a row lacks, is an error naming the key (or
the file and line).
"""
from __future__ import annotations

import string

from ...errors import UserError, suggest


def placeholders(fmt: str, where: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        raise UserError(f"bad format string ({exc})", where=where, expected="text with {field} placeholders; '{{' for a brace") from None
    for name in names:
        if not name.isidentifier():
            raise UserError(f"bad placeholder '{{{name}}}'", where=where, expected="{source} or {field_name}")
    return names


def check_prompt(prompt: str, where: str = "data.prompt") -> None:
    if "source" not in placeholders(prompt, where):
        raise UserError("the prompt template lacks the required field {source}", where=where,
                        expected="a format such as 'Translate {source_language} to {target_language}: {source}'")


def _fill(fmt: str, values: dict, where: str, key: str) -> str:
    for name in placeholders(fmt, key):
        if name not in values:
            raise UserError(f"{key} names field '{{{name}}}', which this sample lacks.{suggest(name, values)}",
                            where=where, expected="one of: " + ", ".join("{" + v + "}" for v in values))
        if name != "source" and not str(values[name]).strip():
            raise UserError(f"field '{name}' used by {key} is empty", where=where)
    return fmt.format_map(values)


def to_messages(row: dict, prompt: str, system: str | None) -> list[dict]:
    """The row's conversation with the prompt format applied to its user turns."""
    fields = dict(row.get("fields") or {})
    where = row.get("source", "input")
    out = []
    if system and not any(m["role"] == "system" for m in row["messages"]):
        out.append({"role": "system", "content": _fill(system, {**fields, "source": ""}, where, "data.system")})
    for m in row["messages"]:
        content = _fill(prompt, {**fields, "source": m["content"]}, where, "data.prompt") if m["role"] == "user" else m["content"]
        out.append({"role": m["role"], "content": content})
    return out


def last_turns(row: dict) -> tuple[str, str]:
    """(last user text, last assistant text): what a report shows as source and reference."""
    user = next((m["content"] for m in reversed(row["messages"]) if m["role"] == "user"), "")
    reply = next((m["content"] for m in reversed(row["messages"]) if m["role"] == "assistant"), "")
    return user, reply
