"""Redaction for everything Gatehouse stores about a call (request logs, approval requests).

Three rules: values under keys that name a secret are replaced; any known secret value (the
credentials Gatehouse holds for that server, the caller's API key) is cut out wherever it appears,
even inside longer strings; and bodies too large to keep are truncated with a marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from accounts.jsonsafe import clean_number, clean_text

REDACTED = "[REDACTED]"
TRUNCATED = "[TRUNCATED]"
SECRET_KEY_RE = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[-_]?key|apikey|authorization|auth[-_]?header|cookie|session[-_]?id|"
    r"private[-_]?key|credential|bearer|signature|x[-_]api[-_]key)",
    re.IGNORECASE,
)
BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
MAX_STRING = 4000
MAX_BODY_BYTES = 16 * 1024
MAX_DEPTH = 20


def _scrub_string(value: str, secrets: list[str], notes: set[str] | None = None) -> str:
    value = clean_text(value, notes)
    for secret in secrets:
        if secret and secret in value:
            value = value.replace(secret, REDACTED)
    value = BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if len(value) > MAX_STRING:
        value = value[:MAX_STRING] + f"… {TRUNCATED} ({len(value)} characters)"
    return value


def secret_list(secrets: Iterable[str]) -> list[str]:
    """The secret values worth cutting, longest first (very short ones would mask ordinary text)."""
    return sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)


def redact(value: Any, secrets: Iterable[str] = (), *, notes: set[str] | None = None, by_key: bool = True) -> Any:
    """A redacted deep copy of a JSON-like value, storable whatever it held (see accounts.jsonsafe).

    `by_key=False` cuts out only known secret values (for text shown as it came, e.g. tool results).
    """
    return _redact(value, secret_list(secrets), 0, notes, by_key)


def _redact(value: Any, secrets: list[str], depth: int, notes: set[str] | None, by_key: bool) -> Any:
    if depth > MAX_DEPTH:
        if notes is not None:
            notes.add(f"nesting deeper than {MAX_DEPTH} levels cut")
        return TRUNCATED
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key_text = _scrub_string(str(key), secrets, notes)
            if by_key and SECRET_KEY_RE.search(key_text) and not isinstance(item, (dict, list)):
                out[key_text] = REDACTED
            else:
                out[key_text] = _redact(item, secrets, depth + 1, notes, by_key)
        return out
    if isinstance(value, (list, tuple)):
        return [_redact(item, secrets, depth + 1, notes, by_key) for item in value]
    if isinstance(value, str):
        return _scrub_string(value, secrets, notes)
    if isinstance(value, float):
        return clean_number(value, notes)
    if value is None or isinstance(value, (bool, int)):
        return value
    return _scrub_string(str(value), secrets, notes)


def redact_for_storage(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Redact, then make sure the stored body stays small and storable: what had to change is noted
    under `_altered`, oversized bodies keep a marked preview. This cannot fail on content."""
    notes: set[str] = set()
    clean = redact(value, secrets, notes=notes)
    if notes:
        altered = sorted(notes)
        clean = {**clean, "_altered": altered} if isinstance(clean, dict) else {"_altered": altered, "value": clean}
    text = json.dumps(clean, ensure_ascii=False, default=str)
    if len(text.encode()) <= MAX_BODY_BYTES:
        return clean
    return {"_truncated": True, "_original_bytes": len(text.encode()), "preview": text[: MAX_BODY_BYTES // 2]}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    return _scrub_string(text or "", secret_list(secrets))


def cut_secrets(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Known secret values cut out of what goes back to an agent; nothing else changes (no key rule,
    no truncation: the result keeps its shape). Depth is bounded by accounts.jsonsafe.loads upstream."""
    cuts = secret_list(secrets)
    if not cuts:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in cuts:
                if secret in item:
                    item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)
