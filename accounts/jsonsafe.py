"""The JSON boundary: what Gatehouse accepts from clients and upstreams, and what it can always store.

Python's `json` accepts things PostgreSQL's jsonb and text columns refuse (NUL characters, unpaired
surrogates, `Infinity` from `1e400`) and nests until it raises RecursionError. Everything that enters
(request bodies, MCP messages, upstream answers) is read with `loads`; everything that is stored goes
through `storable`, which cannot fail on content. The core app owns this so every app can use it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
REPLACEMENT = "\ufffd"


class UnsafeJSON(ValueError):
    """The document cannot be accepted; the message says why, for the person or agent who sent it."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeJSON(f"The number {text[:40]} is out of range.")
    return value


def _no_constants(name: str) -> Any:
    raise UnsafeJSON(f"{name} is not a JSON value.")


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads that refuses out-of-range numbers and nesting deeper than `max_depth` (never RecursionError)."""
    try:
        value = json.loads(data, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError:
        raise UnsafeJSON(f"The JSON is nested deeper than {max_depth} levels.") from None
    if too_deep(value, max_depth):
        raise UnsafeJSON(f"The JSON is nested deeper than {max_depth} levels.")
    # An unpaired surrogate can only arrive as a \uD8xx–\uDFxx escape; only then is the walk needed.
    marker = b"\\u" if isinstance(data, bytes) else "\\u"
    if marker in data and _SURROGATE_ESCAPE.search(data if isinstance(data, str) else data.decode("utf-8", "replace")):
        value = _mend(value)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _mend(value: Any) -> Any:
    """Unpaired surrogates become U+FFFD: no database, encoder or peer can take them (depth is bounded)."""
    if isinstance(value, str):
        return _no_surrogates(value)
    if isinstance(value, dict):
        return {_no_surrogates(k): _mend(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mend(v) for v in value]
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Iterative, so a hostile document cannot exhaust the stack while we measure it."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL (\\u0000) character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode)"
    return None


def unstorable(value: Any, *, name: str = "", limit: int = MAX_DEPTH) -> str | None:
    """Why `value` could not be stored exactly as it is, naming the place; None when it can."""
    stack = [(value, name or "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > limit:
            return f"{path} is nested deeper than {limit} levels"
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return f"{path} {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path} is a number out of range"
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(str(key))
                if problem:
                    return f"a key in {path} {problem}"
                stack.append((child, f"{path}.{key}"[:200], depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{i}]"[:200], depth + 1) for i, child in enumerate(item))
    return None


def clean_text(text: str, notes: set[str] | None = None) -> str:
    """Text every database column accepts: NUL and unpaired surrogates become U+FFFD (noted)."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
        if notes is not None:
            notes.add("NUL characters replaced by U+FFFD")
    mended = _no_surrogates(text)
    if mended is not text and notes is not None:
        notes.add("unpaired surrogates replaced by U+FFFD")
    return mended


def _no_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def clean_number(value: float, notes: set[str] | None = None) -> float | str:
    if math.isfinite(value):
        return value
    if notes is not None:
        notes.add("out-of-range numbers stored as text")
    return str(value)
