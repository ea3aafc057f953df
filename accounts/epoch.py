"""Per-worker memo of hot-path reads, invalidated by the database itself.

Every table whose rows decide a governed call (keys, users, memberships, servers, tools, permissions,
standing approvals, credentials, sessions, gateways) carries triggers that bump one counter row
(`CacheEpoch`) inside the writing transaction — ORM saves, `.update()`, `bulk_*`, raw SQL and the
admin alike. A request on the hot path reads the counter once (`cached_reads()`, one indexed row);
memoized reads made inside that block come from this worker's memory while the counter is unchanged,
and are rebuilt from the database after any such commit. So a revoked key, a disabled tool or a
rotated credential holds from the very next call after its commit, in every worker.

Why not LISTEN/NOTIFY alone: a notification reaches another worker's listener some time after the
commit, so "the very next call" could still use the old answer; reading the counter is one round trip
of ~0.1 ms and exact, on PostgreSQL and SQLite alike. The triggers are (re)installed after every
`migrate` (`install_triggers`), since SQLite drops a table's triggers when a migration rebuilds it.

Outside `cached_reads()` (pages, commands, services) `memoized` simply runs the query: only the hot
path opts in. Decrypted credentials held here stay in this process's memory, never in a shared cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from accounts import hotsql

T = TypeVar("T")
TABLE = "accounts_cacheepoch"
MAX_ENTRIES = 20_000  # a full memo starts again rather than growing without bound


@dataclass(frozen=True)
class Watch:
    """A table whose writes invalidate the memo. `columns`: only updates of these (None: any update).
    `inserts`: whether inserting a row can change an answer (not for rows looked up by an unguessable
    digest, which are never cached as missing). `row_filter`: SQL over NEW/OLD naming the rows that matter."""

    table: str
    columns: tuple[str, ...] | None = None
    inserts: bool = True
    row_filter: str = ""
    per_row: bool = False  # PostgreSQL: bump only when rows changed (statement triggers fire on none too)


WATCHED: dict[str, Watch] = {}


def watch(table: str, **options: Any) -> None:
    """Apps register their tables in AppConfig.ready (each app knows its own)."""
    WATCHED[table] = Watch(table, **options)


class _Memo:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch: int | None = None
        self.born = 0.0
        self.entries: dict[Any, tuple[Any, datetime | None]] = {}

    def clear(self) -> None:
        with self.lock:
            self.epoch, self.entries = None, {}

    def align(self, epoch: int | None) -> None:
        """Start afresh when the counter moved, or after the TTL backstop."""
        now = time.monotonic()
        with self.lock:
            if self.epoch != epoch or now - self.born > settings.POLICY_CACHE_SECONDS:
                self.epoch, self.born, self.entries = epoch, now, {}


MEMO = _Memo()
_local = threading.local()


def read_epoch() -> int | None:
    """The counter (None when its row is missing: then nothing is cached). A connection that died while
    idle is opened again once: nothing has been done on it yet, so retrying is safe — this read doubles
    as the connection health check the hot path skips."""
    for attempt in (1, 2):
        try:
            with hotsql.cursor() as cursor:
                cursor.execute(f"SELECT value FROM {TABLE} WHERE id = 1")
                row = cursor.fetchone()
            return row[0] if row else None
        except DatabaseError:
            if attempt == 2 or connection.in_atomic_block:
                raise
            connection.close()
    return None  # pragma: no cover - the loop always returns or raises


@contextmanager
def cached_reads() -> Iterator[None]:
    """Within this block, `memoized` reads may come from this worker's memo, valid as of now."""
    if settings.POLICY_CACHE_SECONDS <= 0:
        yield
        return
    connection.health_check_done = True  # read_epoch is this request's health check
    epoch = read_epoch()
    MEMO.align(epoch)
    _local.epoch = epoch
    try:
        yield
    finally:
        _local.epoch = None


def reread() -> None:
    """Inside `cached_reads()`: take the counter again, so a long request's later steps (the next call of
    a batch) see what was committed meanwhile."""
    if getattr(_local, "epoch", None) is None:
        return  # not in a block, or nothing is remembered in this one
    epoch = read_epoch()
    MEMO.align(epoch)
    _local.epoch = epoch


def memoized(
    key: Any,
    build: Callable[[], T],
    *,
    until: Callable[[T], datetime | None] | None = None,
    keep_missing: bool = True,
) -> T:
    """`build()`, or its remembered value inside `cached_reads()`. `until` names when a value stops being
    true by itself (a standing approval or a key that expires): after that it is built again.
    `keep_missing=False`: a None answer is not remembered (rows whose inserts do not bump the epoch)."""
    epoch = getattr(_local, "epoch", None)
    if epoch is None:
        return build()
    found = remembered(key, epoch)
    if found is not None:
        return found[0]
    value = build()
    if value is None and not keep_missing:
        return value
    expires = until(value) if until is not None and value is not None else None
    with MEMO.lock:
        if MEMO.epoch == epoch:  # another thread may have seen a newer counter meanwhile: then do not store
            if len(MEMO.entries) >= MAX_ENTRIES:
                MEMO.entries = {}
            MEMO.entries[key] = (value, expires)
    return value


def remembered(key: Any, epoch: int | None = None) -> tuple[Any] | None:
    """(value,) when this worker remembers `key` for the current block, else None; never queries."""
    epoch = getattr(_local, "epoch", None) if epoch is None else epoch
    found = MEMO.entries.get(key) if epoch is not None else None
    if found is None or MEMO.epoch != epoch or (found[1] is not None and found[1] <= timezone.now()):
        return None
    return (found[0],)


def earliest(*moments: datetime | None) -> datetime | None:
    found = [m for m in moments if m is not None]
    return min(found) if found else None


# --- triggers ---------------------------------------------------------------------------------------

# A counter row created afresh (first migrate, a flush, a manual delete) starts at a random value, so it never
# repeats one a worker still remembers.
_BUMP_PG = (
    f"INSERT INTO {TABLE} (id, value) VALUES (1, (random() * 1e15)::bigint) "
    f"ON CONFLICT (id) DO UPDATE SET value = {TABLE}.value + 1"
)
_BUMP_SQLITE = (
    f"INSERT INTO {TABLE} (id, value) VALUES (1, abs(random() % 1000000000000000)) "
    "ON CONFLICT (id) DO UPDATE SET value = value + 1"
)


def _events(w: Watch) -> Iterable[tuple[str, str, str]]:
    """(name suffix, event clause, row filter) per trigger of a watched table."""
    update = "UPDATE" + (f" OF {', '.join(w.columns)}" if w.columns else "")
    refs = {"INSERT": ("NEW",), "UPDATE": ("OLD", "NEW"), "DELETE": ("OLD",)}
    events = (
        [("ins", "INSERT"), ("upd", update), ("del", "DELETE")] if w.inserts else [("upd", update), ("del", "DELETE")]
    )
    for suffix, clause in events:
        verb = clause.split()[0]
        where = " OR ".join(w.row_filter.format(row=r) for r in refs[verb]) if w.row_filter else ""
        yield suffix, clause, where


def trigger_sql(vendor: str) -> list[tuple[str | None, str]]:
    """(table, statement) pairs that (re)create every trigger, idempotently (table None: always run)."""
    statements: list[tuple[str | None, str]] = []
    if vendor == "postgresql":
        statements.append(
            (
                None,
                "CREATE OR REPLACE FUNCTION gatehouse_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN {_BUMP_PG}; RETURN NULL; END $$",
            )
        )
    for w in WATCHED.values():
        for suffix, clause, where in _events(w):
            name = f"gh_epoch_{w.table}_{suffix}"
            if vendor == "postgresql":
                # One bump per statement unless rows must be told apart (then per row).
                level = f"FOR EACH ROW WHEN ({where})" if where else "FOR EACH STATEMENT"
                level = "FOR EACH ROW" if w.per_row and not where else level
                statements.append(
                    (
                        w.table,
                        f"CREATE OR REPLACE TRIGGER {name} AFTER {clause} ON {w.table} {level} "
                        "EXECUTE FUNCTION gatehouse_epoch_bump()",
                    )
                )
            else:
                when = f" WHEN {where}" if where else ""
                statements.append((w.table, f"DROP TRIGGER IF EXISTS {name}"))
                statements.append(
                    (
                        w.table,
                        f"CREATE TRIGGER {name} AFTER {clause} ON {w.table} FOR EACH ROW{when} "
                        f"BEGIN {_BUMP_SQLITE}; END",
                    )
                )
    return statements


def install_triggers(using: str = "default", **_: Any) -> None:
    """post_migrate: every watched table's triggers, and the counter row."""
    conn = connections[using]
    present = set(conn.introspection.table_names())
    if conn.vendor not in ("postgresql", "sqlite") or TABLE not in present:
        return
    with transaction.atomic(using=using), conn.cursor() as cursor:
        for table, statement in trigger_sql(conn.vendor):
            if table is None or table in present:
                cursor.execute(statement)
        cursor.execute(_BUMP_PG if conn.vendor == "postgresql" else _BUMP_SQLITE)


def installed_triggers(using: str = "default") -> set[str]:
    """Names of the epoch triggers the database holds (for the health of this mechanism, and tests)."""
    conn = connections[using]
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'gh_epoch_%%' AND NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'gh_epoch_%'")
        return {row[0] for row in cursor.fetchall()}


def expected_triggers() -> set[str]:
    return {f"gh_epoch_{w.table}_{suffix}" for w in WATCHED.values() for suffix, _, _ in _events(w)}
