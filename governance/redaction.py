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


def _scrub_string(value: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and secret in value:
            value = value.replace(secret, REDACTED)
    value = BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if len(value) > MAX_STRING:
        value = value[:MAX_STRING] + f"… {TRUNCATED} ({len(value)} characters)"
    return value


def redact(value: Any, secrets: Iterable[str] = (), *, _depth: int = 0) -> Any:
    """A redacted deep copy of a JSON-like value."""
    secret_list = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)
    return _redact(value, secret_list, 0)


def _redact(value: Any, secrets: list[str], depth: int) -> Any:
    if depth > MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key_text = str(key)
            if SECRET_KEY_RE.search(key_text) and not isinstance(item, (dict, list)):
                out[_scrub_string(key_text, secrets)] = REDACTED
            else:
                out[_scrub_string(key_text, secrets)] = _redact(item, secrets, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_redact(item, secrets, depth + 1) for item in value]
    if isinstance(value, str):
        return _scrub_string(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _scrub_string(str(value), secrets)


def redact_for_storage(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Redact, then make sure the stored body stays small: oversized bodies keep a marked preview."""
    clean = redact(value, secrets)
    text = json.dumps(clean, ensure_ascii=False, default=str)
    if len(text.encode()) <= MAX_BODY_BYTES:
        return clean
    return {"_truncated": True, "_original_bytes": len(text.encode()), "preview": text[: MAX_BODY_BYTES // 2]}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    secret_list = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)
    return _scrub_string(text or "", secret_list)
