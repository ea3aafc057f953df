"""What a person deciding an approval request is shown: the full arguments that will run.

The stored `arguments` of an ApprovalRequest are a redacted, possibly truncated preview; the call it
approves is bound to `arguments_digest`, a hash of the FULL arguments. So the inbox and the API show
the full arguments (kept encrypted in `arguments_full` while the request can still run), masking
values under secret-looking keys until the owner reveals them. Values equal to secrets Gatehouse holds
(the server's credentials, API keys) stay masked even then: they are Gatehouse's, not the agent's.
Nothing here truncates: the person sees exactly what runs, or is told it cannot be shown.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from accounts.models import ApiKey, api_key_digest
from accounts.redaction import BEARER_RE, SECRET_KEY_RE, TRUNCATED, secret_list
from mcpsettings import upstream
from mcpsettings.models import McpServer

HIDDEN = "[HIDDEN]"  # a value under a secret-looking key: the owner may reveal it
CREDENTIAL = "[STORED CREDENTIAL]"  # the server's credentials, a Gatehouse API key: never shown


def full_arguments_text(arguments: Any) -> str:
    """The full arguments as JSON text for `ApprovalRequest.arguments_full`.

    UTF-8 where possible; text that is not valid Unicode (an unpaired surrogate) is stored with \\u
    escapes instead, which decode to exactly the same value, so the encrypted column can always hold it.
    """
    text = json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(arguments, ensure_ascii=True, sort_keys=True, default=str)
    return text


def arguments_digest(server: McpServer, tool: str, arguments: dict[str, Any]) -> str:
    """What a "once" grant and an approval request are bound to: this server, tool and exact arguments."""
    canonical = json.dumps(
        {"server": str(server.pk), "tool": tool, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _digest(req, arguments: Any) -> str:
    # The digest needs only the server's id: no query for the server row.
    return arguments_digest(McpServer(pk=req.server_id), req.tool_name, arguments)


def preview_is_complete(req) -> bool:
    """True when the stored (redacted) preview IS the full arguments: nothing was masked or cut."""
    try:
        return _digest(req, req.arguments) == req.arguments_digest
    except (TypeError, ValueError, RecursionError):
        return False


def preview_truncated(req) -> bool:
    """The stored preview was shortened (a long string, or a body over the storage limit)."""
    preview = req.arguments
    if isinstance(preview, dict) and preview.get("_truncated") is True:
        return True
    return TRUNCATED in json.dumps(preview, ensure_ascii=False, default=str)


def full_arguments(req) -> Any | None:
    """The full arguments, or None when they are not held (older request, or already forgotten).

    They must hash to the request's digest: what is shown is, provably, what an approval lets run.
    """
    text = req.arguments_full or ""
    if not text or req.current_status == "expired":  # expired: nothing can run them any more
        return None
    try:
        value = json.loads(text)
        return value if _digest(req, value) == req.arguments_digest else None
    except (TypeError, ValueError, RecursionError):
        return None


def server_secrets(req) -> list[str]:
    """Every secret Gatehouse holds for the request's server (mcpsettings.upstream.server_secrets): none of
    them is ever shown, revealed or not (accounts.redaction.secret_list: longest first, no very short ones)."""
    return secret_list(upstream.server_secrets(req.server))


# A Gatehouse API key as issued (accounts.services: "gh_" + token_urlsafe(32)).
API_KEY_RE = re.compile(r"gh_[A-Za-z0-9_-]{43}")


def api_keys_in(text: str) -> list[str]:
    """Gatehouse API keys (anyone's, live or not) that appear in `text`: an agent may pass its own key
    along, and a key is Gatehouse's secret, never shown. Only the digests are stored, so each candidate
    is checked against them (one query, and only when something looks like a key)."""
    candidates = set(API_KEY_RE.findall(text or ""))
    if not candidates:
        return []
    digests = {api_key_digest(raw): raw for raw in candidates}
    return [digests[d] for d in ApiKey.objects.filter(digest__in=digests).values_list("digest", flat=True)]


@dataclass
class Masked:
    value: Any
    hidden: int = 0  # values masked by the secret-key rule (revealable)
    credentials: int = 0  # credential values masked (never revealed)


def mask(value: Any, secrets: Iterable[str], *, reveal: bool) -> Masked:
    """A masked deep copy: known credential values always; secret-looking keys and `Bearer …` unless revealed.

    Unlike accounts.redaction, nothing is truncated and unusual values are kept as they are.
    """
    secret_list = list(secrets)
    out = Masked(None)

    def text(item: str) -> str:
        for secret in secret_list:
            if secret in item:
                out.credentials += item.count(secret)
                item = item.replace(secret, CREDENTIAL)
        if not reveal:
            item, count = BEARER_RE.subn(lambda m: f"{m.group(1)} {HIDDEN}", item)
            out.hidden += count
        return item

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            copy = {}
            for key, child in item.items():
                key_text = text(str(key))
                if not reveal and SECRET_KEY_RE.search(key_text) and not isinstance(child, (dict, list)):
                    out.hidden += 1
                    copy[key_text] = HIDDEN
                else:
                    copy[key_text] = walk(child)
            return copy
        if isinstance(item, list):
            return [walk(child) for child in item]
        if isinstance(item, str):
            return text(item)
        return item

    out.value = walk(value)
    return out


def pretty(value: Any) -> str:
    """Indented JSON, exact: anything that is not valid Unicode is written as a \\u escape."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True, default=str)
    return text


@dataclass
class Shown:
    """What a card shows about a request's arguments."""

    available: bool  # the full arguments are held and shown
    complete: bool  # the stored preview equals the full arguments
    truncated: bool  # the stored preview was shortened
    revealed: bool
    text: str  # pretty JSON of what is shown (full and masked, or the stored preview)
    value: Any  # the same, as a value (for the API)
    chars: int | None  # size of the full arguments (JSON text), when held
    bytes: int | None
    hidden: int = 0
    credentials: int = 0

    @property
    def once_allowed(self) -> bool:
        """Allow-once needs the person to see everything it lets run: hidden values revealed first."""
        return (self.available or self.complete) and (not self.hidden or self.revealed)


def shown(req, *, reveal: bool = False, secrets: list[str] | None = None) -> Shown:
    complete = preview_is_complete(req)
    full = full_arguments(req)
    truncated = preview_truncated(req)
    if full is not None:
        known = [*(server_secrets(req) if secrets is None else secrets), *api_keys_in(req.arguments_full)]
        try:
            masked = mask(full, sorted(set(known), key=len, reverse=True), reveal=reveal)
        except RecursionError:  # nested too deep to show: then it is not shown, and not approvable once
            full = None
    if full is None:
        return Shown(False, complete, truncated, False, pretty(req.arguments), req.arguments, None, None)
    size = req.arguments_full
    return Shown(
        True,
        complete,
        truncated,
        reveal,
        pretty(masked.value),
        masked.value,
        len(size),
        len(size.encode("utf-8", "surrogatepass")),
        masked.hidden,
        masked.credentials,
    )


def strict_json(value: Any) -> Any:
    """`value` as strict JSON can carry it (for the API): an out-of-range number becomes its JSON spelling
    as text ("Infinity"), an unpaired surrogate its \\u escape as text. Ordinary values are unchanged."""

    def text(item: str) -> str:
        try:
            item.encode("utf-8")
            return item
        except UnicodeEncodeError:
            return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in item)

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            return {text(str(k)): walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str):
            return text(item)
        if isinstance(item, float) and not math.isfinite(item):
            return json.dumps(item)
        return item

    return walk(value)
