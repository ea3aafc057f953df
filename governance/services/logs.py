"""Writes for the record of calls: RequestLog rows and the day's UsageDaily counters.

A call that did not run is one row, written with its usage in one transaction (`request_log_record`).
A call that runs is opened before the upstream sees it (`request_log_open`, with a once-grant used up
in the same transaction) and completed with its usage afterwards (`request_log_complete`); a row left
`running` by a database failure in between is settled later (`request_logs_settle`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Func, JSONField
from django.utils import timezone

from accounts.jsonsafe import clean_text
from accounts.ratelimit import valid_ip
from accounts.redaction import redact_for_storage, redact_text
from governance.models import LATENCY_BUCKETS_MS, RequestLog, UsageDaily, latency_bucket
from governance.services.approvals import once_approval_use
from mcpsettings.models import McpServer

RUNNING = "running"
UNFINISHED = "unfinished"


@dataclass
class CallFacts:
    """What is recorded about one call, whatever its outcome (bodies redacted against `secrets`)."""

    user: Any
    api_key: Any
    server: McpServer | None
    tool: str
    arguments: dict[str, Any]
    secrets: list[str]
    ip: str | None
    user_agent: str
    via: str
    server_ref: str = ""  # what the agent named, when no server matched
    started: float = field(default_factory=time.monotonic)

    def fields(self) -> dict[str, Any]:
        server = self.server
        return {
            "user": self.user,
            "api_key": self.api_key,
            "server": server,
            "organization": server.organization if server else None,
            "server_name": clean_text(server.name if server else self.server_ref)[:100],
            "tool_name": clean_text(self.tool)[:200],
            "method": "tools/call",
            "via": self.via,
            "request_body": redact_for_storage({"tool": self.tool, "arguments": self.arguments}, self.secrets),
            "ip": valid_ip(self.ip),
            "user_agent": clean_text(self.user_agent or "")[:300],
        }

    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


@transaction.atomic
def request_log_record(
    facts: CallFacts, *, response, status: str, status_code: int, error: str, count_usage: bool = True
) -> RequestLog:
    """A call that did not run upstream: its row and (unless it is not a call to a known server, or it
    only waits for a person) the day's usage, in one transaction."""
    duration = facts.duration_ms()
    entry = RequestLog.objects.create(
        **facts.fields(),
        response_body=redact_for_storage(response, facts.secrets),
        status=status[:20],
        status_code=status_code,
        duration_ms=duration,
        error_message=redact_text(error, facts.secrets),
    )
    if count_usage and facts.server is not None:
        _count_usage(server=facts.server, user=facts.user, ok=200 <= status_code < 300, duration=duration)
    return entry


@transaction.atomic
def request_log_open(facts: CallFacts, *, once_digest: str | None = None) -> RequestLog | None:
    """The row that says a call is running, written before the upstream sees it. With `once_digest`, a
    matching once-approval is used up in the same transaction (None: there was none to use)."""
    if once_digest is not None and not once_approval_use(
        user=facts.user, server=facts.server, tool=facts.tool, digest=once_digest
    ):
        return None
    return RequestLog.objects.create(**facts.fields(), status=RUNNING, status_code=0, response_body={})


@transaction.atomic
def request_log_complete(
    entry: RequestLog, facts: CallFacts, *, response, status: str, status_code: int, error: str
) -> None:
    """Finish the row opened before the upstream call, and count it, in one transaction. A row that
    request_logs_settle already marked (a very slow call) gets its real outcome but is not counted twice."""
    entry.duration_ms = facts.duration_ms()
    entry.response_body = redact_for_storage(response, facts.secrets)
    entry.status, entry.status_code = status[:20], status_code
    entry.error_message = redact_text(error, facts.secrets)
    fields = {f: getattr(entry, f) for f in ("duration_ms", "response_body", "status", "status_code", "error_message")}
    if RequestLog.objects.filter(pk=entry.pk, status=RUNNING).update(**fields):
        _count_usage(server=facts.server, user=facts.user, ok=200 <= status_code < 300, duration=entry.duration_ms)
    else:
        RequestLog.objects.filter(pk=entry.pk).update(**fields)


def request_logs_settle(*, older_than: timedelta | None = None) -> int:
    """Rows still "running" long after any call could have ended (the database failed after the upstream
    ran): mark them unfinished and count them, so usage matches the log. Safe to run from many workers."""
    if older_than is None:
        older_than = timedelta(seconds=settings.MCP_HTTP_TIMEOUT * 2 + 60)
    cutoff = timezone.now() - older_than
    settled = 0
    for pk in RequestLog.objects.filter(status=RUNNING, created_at__lt=cutoff).values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            entry = RequestLog.objects.select_for_update(skip_locked=True).filter(pk=pk, status=RUNNING).first()
            if entry is None:
                continue
            entry.status, entry.status_code = UNFINISHED, 0
            entry.error_message = "The call ran, but its result was never recorded (the database was unavailable)."
            entry.save(update_fields=["status", "status_code", "error_message"])
            if entry.server_id is not None:
                _count_usage(server=entry.server, user=entry.user, ok=False, duration=entry.duration_ms)
            settled += 1
    return settled


def prune_logs(*, days: int) -> int:
    """Delete request logs older than `days` days (usage rows stay). Returns how many went."""
    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        ids = list(RequestLog.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:5000])
        if not ids:
            return total
        total += RequestLog.objects.filter(pk__in=ids).delete()[0]


# --- usage -----------------------------------------------------------------------------------------

HISTOGRAM_SIZE = len(LATENCY_BUCKETS_MS) + 1


def fresh_histogram(bucket: int) -> list[int]:
    return [1 if i == bucket else 0 for i in range(HISTOGRAM_SIZE)]


class HistogramIncrement(Func):
    """`histogram[bucket] += 1` inside the UPDATE, so concurrent calls never lose a count."""

    output_field = JSONField()

    def __init__(self, field: str, bucket: int) -> None:
        super().__init__(F(field))
        self.bucket = int(bucket)

    def _sql(self, compiler, template: str):
        column, params = compiler.compile(self.source_expressions[0])
        fresh = json.dumps(fresh_histogram(self.bucket))
        sql = template.format(h=column, i=self.bucket, n=HISTOGRAM_SIZE, fresh=fresh)
        return sql, [*params] * sql.count(column)

    def as_postgresql(self, compiler, connection, **extra):
        return self._sql(
            compiler,
            "(CASE WHEN jsonb_typeof({h}) = 'array' AND jsonb_array_length({h}) = {n} "
            "THEN jsonb_set({h}, '{{{i}}}', to_jsonb(({h}->>{i})::int + 1)) ELSE '{fresh}'::jsonb END)",
        )

    def as_sql(self, compiler, connection, **extra):  # SQLite
        return self._sql(
            compiler,
            "(CASE WHEN json_array_length({h}) = {n} "
            "THEN json_set({h}, '$[{i}]', json_extract({h}, '$[{i}]') + 1) ELSE json('{fresh}') END)",
        )


def _count_usage(*, server, user, ok: bool, duration: int) -> None:
    """Add one call to the day's counters (inside the caller's transaction)."""
    bucket = latency_bucket(duration)
    lookup = {"server": server, "user": user, "date": timezone.localdate(), "organization": server.organization}
    increments = {
        "request_count": F("request_count") + 1,
        "successful": F("successful") + (1 if ok else 0),
        "failed": F("failed") + (0 if ok else 1),
        "total_duration_ms": F("total_duration_ms") + duration,
        "latency_histogram": HistogramIncrement("latency_histogram", bucket),
    }
    if not UsageDaily.objects.filter(**lookup).update(**increments):
        try:
            with transaction.atomic():
                UsageDaily.objects.create(
                    **lookup,
                    request_count=1,
                    successful=int(ok),
                    failed=int(not ok),
                    total_duration_ms=duration,
                    latency_histogram=fresh_histogram(bucket),
                )
        except IntegrityError:  # a concurrent first call of the day created it: add to it instead
            UsageDaily.objects.filter(**lookup).update(**increments)
