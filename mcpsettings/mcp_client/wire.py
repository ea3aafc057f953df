"""Reading an MCP answer off the wire: JSON or an SSE stream, with a size cap and a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from accounts import jsonsafe
from mcpsettings.mcp_client.errors import McpError
from mcpsettings.mcp_client.transport import Response

CHUNK = 16 * 1024


def _chunks(response: Response, max_bytes: int, deadline: float) -> Iterator[bytes]:
    """The body as it arrives, cut at `max_bytes` and at the deadline.

    The response (mcp_client.transport) raises McpError itself when the connection breaks or goes quiet
    for longer than the client's timeout; the deadline bounds an answer that trickles in.
    """
    total = 0
    for chunk in response.iter_content(chunk_size=CHUNK):
        if not chunk:
            continue
        total += len(chunk)
        if total > max_bytes:
            raise McpError("too_large", f"The server's answer is larger than the {max_bytes:,}-byte limit.")
        if time.monotonic() > deadline:
            raise McpError("timeout", "The server took too long to answer.")
        yield chunk


def read_json(response: Response, max_bytes: int, deadline: float) -> Any:
    body = b"".join(_chunks(response, max_bytes, deadline))
    return _loads(body, "not_mcp", "The server's answer is not valid JSON; is this an MCP endpoint?")


def _loads(data: str | bytes, kind: str, sentence: str) -> Any:
    """Parse an upstream document; out-of-range numbers and deep nesting are protocol errors, never a crash."""
    try:
        return jsonsafe.loads(data)
    except jsonsafe.UnsafeJSON as exc:
        raise McpError("protocol", f"The server's answer cannot be accepted: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise McpError(kind, sentence) from None


def parse_sse_events(lines: Iterator[str], max_event: int | None = None) -> Iterator[dict[str, str]]:
    """Server-sent events from lines (line endings already removed). Yields {"event","data","id"}."""
    data: list[str] = []
    size = 0
    event = ""
    event_id = ""
    for line in lines:
        if line == "":
            if data:
                yield {"event": event or "message", "data": "\n".join(data), "id": event_id}
            data, event, size = [], "", 0
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
            size += len(value) + 1
            if max_event is not None and size > max_event:
                raise McpError("too_large", f"The server sent an event larger than the {max_event:,}-byte limit.")
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value
    if data:
        yield {"event": event or "message", "data": "\n".join(data), "id": event_id}


def _lines(chunks: Iterator[bytes], max_line: int | None = None) -> Iterator[str]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if max_line is not None and len(buffer) > max_line and b"\n" not in buffer and b"\r" not in buffer:
            raise McpError("too_large", f"The server sent an event larger than the {max_line:,}-byte limit.")
        while True:
            # \r\n, \n and lone \r all end a line in SSE.
            idx_n, idx_r = buffer.find(b"\n"), buffer.find(b"\r")
            candidates = [i for i in (idx_n, idx_r) if i >= 0]
            if not candidates:
                break
            idx = min(candidates)
            if buffer[idx : idx + 1] == b"\r" and idx + 1 >= len(buffer):
                break  # maybe \r\n split across chunks: wait for more
            line, sep = buffer[:idx], buffer[idx : idx + 1]
            step = 2 if sep == b"\r" and buffer[idx + 1 : idx + 2] == b"\n" else 1
            buffer = buffer[idx + step :]
            yield line.decode("utf-8", errors="replace")
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", errors="replace")


def events(response: Response, max_event_bytes: int) -> Iterator[dict[str, str]]:
    """The events of a long-lived stream (no overall size or deadline: each line is capped instead)."""
    return parse_sse_events(_lines((c for c in response.iter_content(CHUNK) if c), max_event_bytes), max_event_bytes)


def find_response(messages: Any, request_id: Any) -> dict | None:
    """Our JSON-RPC response among one message or a batch; None if it is not there."""
    items = messages if isinstance(messages, list) else [messages]
    for msg in items:
        if isinstance(msg, dict) and msg.get("id") == request_id and ("result" in msg or "error" in msg):
            return msg
    return None


def read_sse(
    response: Response,
    request_id: Any,
    max_bytes: int,
    deadline: float,
    on_message: Callable[[dict], None] | None = None,
) -> dict:
    """Read events until the response to `request_id`; skip priming events. Every other message on the
    stream (a notification, a request of the server's) goes to `on_message` as it arrives."""
    for event in parse_sse_events(_lines(_chunks(response, max_bytes, deadline))):
        if event["event"] not in ("message", ""):
            continue
        if not event["data"].strip():
            continue
        message = _loads(event["data"], "protocol", "The server sent an event that is not valid JSON.")
        found = find_response(message, request_id)
        if found is not None:
            response.close()
            return found
        if on_message is not None:
            for item in message if isinstance(message, list) else [message]:
                if isinstance(item, dict) and isinstance(item.get("method"), str):
                    on_message(item)
    raise McpError("protocol", "The server's event stream ended without an answer to our request.")
