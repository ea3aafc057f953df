"""No secret ever leaves encrypted storage: every page, endpoint, admin page, log line and row is searched."""

from __future__ import annotations

import logging

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.security.routes import all_routes, expand

pytestmark = pytest.mark.django_db

USERS = ("owner", "teammate", "viewer", "outsider", "root")


def leaks(text: str, canaries: dict) -> list[str]:
    return [name for name, value in canaries.items() if value and value in text]


def crawl(world, user_key: str) -> tuple[int, list[tuple[str, list[str]]]]:
    """GET every page, endpoint and admin page as this user; return (count, [(url, leaked canaries)])."""
    user = world[user_key]
    web = Client()
    web.force_login(user)
    api = APIClient()
    api.force_authenticate(user)
    found, seen = [], 0
    urls = [expand(r, world["params"]) for r in all_routes()]
    urls += [
        "/no/such/page/",
        "/api/v1/settings/mcps?deleted=true",
        "/api/v1/approvals?status=pending",
        "/api/v1/logs",
        "/api/v1/usage?days=30",
        "/activity/?status=ok",
    ]
    for url in urls:
        for client in (web, api):
            res = client.get(url)
            body = res.content.decode(errors="replace") + str(dict(res.headers))
            seen += 1
            bad = leaks(body, world["canaries"])
            if bad:
                found.append((url, bad))
    # The admin: every registered model's list, and every object's change and history page.
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        pages = [reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")]
        for obj in model_admin.get_queryset(type("R", (), {"user": world["root"]})())[:20]:
            for view in ("change", "history"):
                pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk]))
        for url in pages:
            res = web.get(url)
            seen += 1
            bad = leaks(res.content.decode(errors="replace"), world["canaries"])
            if bad:
                found.append((url, bad))
    return seen, found


def test_no_canary_anywhere(world, caplog, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    caplog.set_level(logging.DEBUG)
    canaries = world["canaries"]
    # Make the secrets travel: calls whose arguments carry them, through a server that fails upstream.
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {world['raw_key']}")
    for args in ({"text": canaries["bearer"]}, {"token": canaries["oauth_access"], "note": world["raw_key"]}):
        res = agent.post(
            "/api/v1/tools/call",
            {"server": str(world["personal"].pk), "tool": "echo", "arguments": args},
            format="json",
        )
        assert res.status_code in (200, 502), res.content
        assert not leaks(res.content.decode(), canaries)
    res = agent.post(
        "/api/v1/tools/call",
        {"server": str(world["org_server"].pk), "tool": "echo", "arguments": {"secret": canaries["header"]}},
        format="json",
    )
    assert res.status_code == 202 and not leaks(res.content.decode(), canaries)

    total = 0
    for user_key in USERS:
        seen, found = crawl(world, user_key)
        total += seen
        assert not found, f"as {user_key}: {found}"
    assert total > 300  # pages, endpoints and admin pages actually fetched

    logged = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert not leaks(logged, canaries), "a canary reached the logs"
    for model in world["models"]:
        for row in model.objects.all():
            text = " ".join(str(getattr(row, f.attname)) for f in row._meta.concrete_fields)
            assert not leaks(text, canaries), f"{model.__name__} {row.pk}"
    # The raw database: every text-like column of every table.
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump = str(cursor.fetchall())
            assert not leaks(dump, canaries), f"plaintext secret in table {table}"
