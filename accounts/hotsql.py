"""The few statements every governed call runs (the epoch read, the log row opened and completed), below
the ORM and, on PostgreSQL, bound on the server.

Django's psycopg backend binds parameters on the client: each statement is quoted in Python and parsed
and planned again by PostgreSQL, which a profile of the call path put at a third of its CPU. Here the
cursor is psycopg's server-binding one, its statements prepared once per connection, yet still wrapped by
Django (its error classes, `execute_wrapper`s and query capture all apply). Values skip the fields'
`get_db_prep_save` on PostgreSQL (psycopg adapts UUIDs, datetimes and dates itself; JSON goes as jsonb);
SQLite gets what the ORM would store. Behind a transaction-pooling PgBouncer, prepared statements need
PgBouncer ≥ 1.21 with `max_prepared_statements` set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import JSONField, Model
from psycopg import Cursor
from psycopg.types.json import Jsonb


@contextmanager
def cursor() -> Iterator[Any]:
    if connection.vendor != "postgresql":
        with connection.cursor() as plain:
            yield plain
        return
    connection.ensure_connection()
    raw_connection = connection.connection
    raw_connection.prepare_threshold = 0  # only server-binding cursors (these) ever prepare
    raw = Cursor(raw_connection)
    wrapped = _Logged(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    try:
        yield wrapped
    finally:
        raw.close()


class _Logged(CursorDebugWrapper):
    """Django's query log for a server-bound cursor: psycopg keeps no query text once a statement is
    prepared, so the log records the statement as written."""

    @contextmanager
    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        with super().debug_sql(sql, params, use_last_executed_query=False, many=many):
            yield


def values(model: type[Model], row: dict[str, Any]) -> list[Any]:
    """Parameters for `row` ({field name: value}) as this database takes them."""
    fields = model._meta
    if connection.vendor != "postgresql":
        return [fields.get_field(name).get_db_prep_save(value, connection) for name, value in row.items()]
    return [Jsonb(v) if isinstance(fields.get_field(n), JSONField) else v for n, v in row.items()]


def typed_marks(model: type[Model], names: list[str]) -> str:
    """`%s::type` per field, for parameters where PostgreSQL cannot infer a type (a SELECT list)."""
    return _typed_marks(model, tuple(names), connection.vendor)


@lru_cache(maxsize=64)
def _typed_marks(model: type[Model], names: tuple[str, ...], vendor: str) -> str:
    if vendor != "postgresql":
        return ", ".join(["%s"] * len(names))
    return ", ".join(f"%s::{model._meta.get_field(n).db_type(connection)}" for n in names)
