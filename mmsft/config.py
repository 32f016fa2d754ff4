"""Typed configs from plain dicts: unknown keys and wrong types fail with the key path and a hint.

Schemas are dataclasses; ``from_dict`` walks them recursively.  ``apply_overrides`` takes
torchtune-style ``key.path=value`` strings (values parsed as YAML scalars).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import UserError, suggest


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", where=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # a ReaderError has no .problem, a multi-line str
        raise UserError(f"invalid YAML: {problem}", where=where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("top level must be a mapping of keys to values", where=str(path))
    return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', origin)}[{args}]"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert it (nested dataclasses, int->float)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, arg, path)
            except UserError as exc:
                errors.append(exc)
        raise UserError(f"wrong type {type(value).__name__} ({value!r})", where=path, expected=_type_name(tp))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads a bare no / off / yes / on as a boolean
            value = next((w for w in (("yes", "on", "true") if value else ("no", "off", "false")) if w in allowed), value)
        if value not in allowed:
            raise UserError(f"invalid value {value!r}.{suggest(value, allowed)}", where=path, expected=_type_name(tp))
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"wrong type {type(value).__name__} ({value!r})", where=path, expected=_type_name(tp))
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"wrong type {type(value).__name__}", where=path, expected=_type_name(tp))
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {str(k): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-3" as a string
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise UserError(f"wrong type {type(value).__name__} ({value!r})", where=path, expected="true | false")
    if tp is int and isinstance(value, bool):
        raise UserError(f"wrong type bool ({value!r})", where=path, expected="int")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"wrong type {type(value).__name__} ({value!r})", where=path, expected=_type_name(tp))
    return value


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys, missing keys and wrong types."""
    where = path or "<config>"
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping, got {type(data).__name__}", where=where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise UserError(
                f"unknown key '{key}'.{suggest(key, fields)}",
                where=f"{path}.{key}" if path else key,
                expected="one of: " + ", ".join(fields),
            )
    kwargs = {}
    for name, field in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise UserError("missing required key", where=key_path, expected=_type_name(hints[name]))
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check:
        check(path)
    return obj


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (['train', 'lr'], 1e-4).  Values are YAML scalars or lists."""
    if "=" not in text:
        raise UserError(f"bad override '{text}'", where="command line", expected="key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"bad override '{text}'", where="command line", expected="key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested dict (a copy).  Unknown keys are caught later by ``from_dict``."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(
                    f"cannot set '{'.'.join(parts)}': '{'.'.join(parts[: i + 1])}' is not a mapping",
                    where="command line",
                )
            node = child
        node[parts[-1]] = value
    return data


def dotted_keys(data: dict) -> dict[str, Any]:
    """A nested mapping as flat ``{dotted.key: bool | int | float | str}``; other leaves (lists, None) as JSON
    text, an empty mapping as nothing (tracker hyperparameters, the dashboard's config comparison)."""
    import json

    out: dict[str, Any] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        else:
            out[prefix] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value, default=str)

    walk("", data)
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
