"""Writes for the record of calls: RequestLog rows and the day's UsageDaily counters.

A call that did not run is one row, written with its usage in one transaction (`request_log_record`).
A call that runs is opened before the upstream sees it (`request_log_open`, with a once-grant used up
in the same transaction) and completed with its usage afterwards (`request_log_complete`); a row left
`running` by a database failure in between is settled later (`request_logs_settle`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from accounts import hotsql
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
    method: str = "tools/call"  # or resources/read, prompts/get, completion/complete (`tool`: the URI or name)
    started: float = field(default_factory=time.monotonic)

    def fields(self) -> dict[str, Any]:
        server = self.server
        return {
            "user": getattr(self.user, "pk", None),
            "api_key": getattr(self.api_key, "pk", None),
            "server": server.pk if server else None,
            "organization": server.organization_id if server else None,
            "server_name": clean_text(server.name if server else self.server_ref)[:100],
            "tool_name": clean_text(self.tool)[:200],
            "method": self.method,
            "via": self.via,
            "request_body": redact_for_storage(self.request_body(), self.secrets),
            "ip": valid_ip(self.ip),
            "user_agent": clean_text(self.user_agent or "")[:300],
        }

    def request_body(self) -> dict[str, Any]:
        if self.method == "tools/call":
            return {"tool": self.tool, "arguments": self.arguments}
        return {"method": self.method, "params": self.arguments}

    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


# The record of a call is written below the ORM: these statements run on every call, and compiling the
# equivalent querysets cost more than the writes themselves (bench/RESULTS.md). Values still go through
# each field's own preparation, so what is stored is what the ORM would store.
_LOG = RequestLog._meta.db_table
_LOG_COLUMNS = (
    "user",
    "api_key",
    "server",
    "organization",
    "server_name",
    "tool_name",
    "method",
    "via",
    "request_body",
    "response_body",
    "status",
    "status_code",
    "duration_ms",
    "ip",
    "user_agent",
    "error_message",
    "created_at",
)
_OUTCOME = ("response_body", "status", "status_code", "duration_ms", "error_message")


@dataclass(frozen=True)
class Recorded:
    """The id of a row just written (no model instance: this runs on every call)."""

    pk: int


def _outcome(facts: CallFacts, *, response, status: str, status_code: int, error: str, duration: int) -> dict:
    return {
        "response_body": redact_for_storage(response, facts.secrets),
        "status": status[:20],
        "status_code": status_code,
        "duration_ms": duration,
        "error_message": redact_text(error, facts.secrets),
    }


def _insert_row(values: dict[str, Any]) -> int:
    with hotsql.cursor() as cursor:
        cursor.execute(_insert_statement(tuple(values)), hotsql.values(RequestLog, values))
        return cursor.fetchone()[0]


@lru_cache(maxsize=8)
def _insert_statement(names: tuple[str, ...]) -> str:
    columns = ", ".join(RequestLog._meta.get_field(name).column for name in names)
    return f"INSERT INTO {_LOG} ({columns}) VALUES ({', '.join(['%s'] * len(names))}) RETURNING id"


def _row(facts: CallFacts, outcome: dict[str, Any]) -> dict[str, Any]:
    return {**facts.fields(), **outcome, "created_at": timezone.now()}


def request_log_record(
    facts: CallFacts, *, response, status: str, status_code: int, error: str, count_usage: bool = True
) -> Recorded:
    """A call that did not run upstream: its row and (unless it is not a call to a known server, or it
    only waits for a person) the day's usage, in one transaction."""
    duration = facts.duration_ms()
    outcome = _outcome(facts, response=response, status=status, status_code=status_code, error=error, duration=duration)
    with transaction.atomic():
        pk = _insert_row(_row(facts, outcome))
        if count_usage and facts.server is not None:
            with hotsql.cursor() as cursor:
                _add_usage(cursor, facts.server, getattr(facts.user, "pk", None), status_code, duration)
    return Recorded(pk)


def request_log_open(facts: CallFacts, *, once_digest: str | None = None) -> Recorded | None:
    """The row that says a call is running, written (one statement) before the upstream sees it. With
    `once_digest`, a matching once-approval is used up in the same transaction (None: none to use)."""
    running = {"response_body": {}, "status": RUNNING, "status_code": 0, "duration_ms": 0, "error_message": ""}
    if once_digest is None:
        return Recorded(_insert_row(_row(facts, running)))
    with transaction.atomic():
        if not once_approval_use(user=facts.user, server=facts.server, tool=facts.tool, digest=once_digest):
            return None
        return Recorded(_insert_row(_row(facts, running)))


def request_log_complete(
    entry: Recorded, facts: CallFacts, *, response, status: str, status_code: int, error: str
) -> None:
    """Finish the row opened before the upstream call and count it: one statement on PostgreSQL (the row's
    UPDATE feeds the usage upsert), one transaction on SQLite. A row request_logs_settle already marked (a
    very slow call) gets its real outcome but is not counted twice."""
    duration = facts.duration_ms()
    outcome = _outcome(facts, response=response, status=status, status_code=status_code, error=error, duration=duration)
    _complete_row(entry.pk, outcome, facts.server, getattr(facts.user, "pk", None))


def _complete_row(pk: int, outcome: dict[str, Any], server, user_id) -> None:
    sets = ", ".join(f"{name} = %s" for name in _OUTCOME)
    params = hotsql.values(RequestLog, outcome)
    update = f"UPDATE {_LOG} SET {sets} WHERE id = %s"
    if connection.vendor == "postgresql":  # one statement: atomic without a transaction around it
        usage_sql, usage_params = _usage_sql(server, user_id, outcome["status_code"], outcome["duration_ms"])
        with hotsql.cursor() as cursor:
            sql = f"WITH done AS ({update} AND status = %s RETURNING id) {usage_sql.replace(SOURCE, 'done')}"
            cursor.execute(sql, [*params, pk, RUNNING, *usage_params])
            counted = cursor.fetchone() is not None
    else:
        with transaction.atomic(), hotsql.cursor() as cursor:
            cursor.execute(f"{update} AND status = %s", [*params, pk, RUNNING])
            counted = cursor.rowcount == 1
            if counted:
                _add_usage(cursor, server, user_id, outcome["status_code"], outcome["duration_ms"])
    if not counted:  # settled meanwhile: the row gets its real outcome, the usage already counts it
        with hotsql.cursor() as cursor:
            cursor.execute(update, [*params, pk])


def request_logs_settle(*, older_than: timedelta | None = None) -> int:
    """Rows still "running" long after any call could have ended (the database failed after the upstream
    ran): mark them unfinished and count them, so usage matches the log. Safe to run from many workers."""
    if older_than is None:
        # The longest any call may run: the site timeout, or the longest a server's own may be.
        longest = McpServer.objects.aggregate(m=Max("timeout_seconds"))["m"] or 0
        older_than = timedelta(seconds=max(settings.MCP_HTTP_TIMEOUT, longest) + 60)
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
                with hotsql.cursor() as cursor:
                    _add_usage(cursor, entry.server, entry.user_id, 0, entry.duration_ms)
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
_USAGE = UsageDaily._meta.db_table
_USAGE_COLUMNS = "server_id, organization_id, user_id, date, request_count, successful, failed, total_duration_ms"
# Two partial unique indexes (org rows, personal rows): the conflict target names the one that applies.
_CONFLICT = {
    True: "(server_id, organization_id, user_id, date) WHERE organization_id IS NOT NULL",
    False: "(server_id, user_id, date) WHERE organization_id IS NULL",
}
# `histogram[bucket] += 1` inside the upsert, so concurrent calls never lose a count; a malformed
# histogram starts again from the fresh one.
_BUMP = {
    "postgresql": "CASE WHEN jsonb_typeof(u.latency_histogram) = 'array' "
    "AND jsonb_array_length(u.latency_histogram) = {n} "
    "THEN jsonb_set(u.latency_histogram, '{{{i}}}', to_jsonb((u.latency_histogram->>{i})::int + 1)) "
    "ELSE EXCLUDED.latency_histogram END",
    "sqlite": "CASE WHEN json_array_length(u.latency_histogram) = {n} "
    "THEN json_set(u.latency_histogram, '$[{i}]', json_extract(u.latency_histogram, '$[{i}]') + 1) "
    "ELSE json(excluded.latency_histogram) END",
}


def fresh_histogram(bucket: int) -> list[int]:
    return [1 if i == bucket else 0 for i in range(HISTOGRAM_SIZE)]


def _add_usage_without_user(server, status_code: int, duration: int) -> None:
    """A deleted user's call, settled later: NULLs never conflict in a unique index, so no upsert (rare)."""
    ok, bucket, today = 200 <= status_code < 300, latency_bucket(duration), timezone.localdate()
    lookup = {"server": server, "organization_id": server.organization_id, "user": None, "date": today}
    row = UsageDaily.objects.select_for_update().filter(**lookup).first()
    if row is None:
        UsageDaily.objects.create(
            **lookup,
            request_count=1,
            successful=int(ok),
            failed=int(not ok),
            total_duration_ms=duration,
            latency_histogram=fresh_histogram(bucket),
        )
        return
    histogram = row.latency_histogram if len(row.latency_histogram or []) == HISTOGRAM_SIZE else [0] * HISTOGRAM_SIZE
    histogram[bucket] += 1
    row.request_count, row.total_duration_ms = row.request_count + 1, row.total_duration_ms + duration
    row.successful, row.failed = row.successful + int(ok), row.failed + int(not ok)
    row.latency_histogram = histogram
    row.save(update_fields=["request_count", "successful", "failed", "total_duration_ms", "latency_histogram"])


SOURCE = "<source>"  # where the upserted row's values are selected from (a CTE, or one constant row)


def _usage_sql(server, user_id, status_code: int, duration: int) -> tuple[str, list[Any]]:
    """`INSERT … SELECT … FROM <source> ON CONFLICT DO UPDATE`: one call added to the day's counters."""
    ok = 200 <= status_code < 300
    bucket = latency_bucket(duration)
    org_id = server.organization_id
    values = {
        "server": server.pk,
        "organization": org_id,
        "user": user_id,
        "date": timezone.localdate(),
        "request_count": 1,
        "successful": int(ok),
        "failed": int(not ok),
        "total_duration_ms": duration,
        "latency_histogram": fresh_histogram(bucket),
    }
    sql = _usage_statement(connection.vendor, org_id is not None, int(bucket), tuple(values))
    return sql, hotsql.values(UsageDaily, values)


@lru_cache(maxsize=64)
def _usage_statement(vendor: str, has_org: bool, bucket: int, names: tuple[str, ...]) -> str:
    """The upsert's text: a handful of variants (database, org or personal row, bucket), built once each."""
    return (
        f"INSERT INTO {_USAGE} AS u ({_USAGE_COLUMNS}, latency_histogram) "
        f"SELECT {hotsql.typed_marks(UsageDaily, list(names))} FROM {SOURCE} "
        f"ON CONFLICT {_CONFLICT[has_org]} DO UPDATE SET "
        "request_count = u.request_count + 1, successful = u.successful + excluded.successful, "
        "failed = u.failed + excluded.failed, total_duration_ms = u.total_duration_ms + excluded.total_duration_ms, "
        f"latency_histogram = {_BUMP[vendor].format(n=HISTOGRAM_SIZE, i=bucket)} RETURNING 1"
    )


def _add_usage(cursor, server, user_id, status_code: int, duration: int) -> None:
    """Add one call to the day's counters (inside the caller's transaction)."""
    if user_id is None:
        _add_usage_without_user(server, status_code, duration)
        return
    sql, params = _usage_sql(server, user_id, status_code, duration)
    source = "(SELECT 1) AS one" if connection.vendor == "postgresql" else "(SELECT 1) AS one WHERE true"
    cursor.execute(sql.replace(SOURCE, source), params)
