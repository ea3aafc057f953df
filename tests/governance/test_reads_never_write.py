"""GET requests never write: an approval request past its expiry reads as expired everywhere, and only
`manage.py expire_approvals` (or the next call) writes that down."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.models import ApprovalRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
WRITES = ("INSERT", "UPDATE", "DELETE")


def test_pages_and_api_reads_do_not_write(client, owner, server):
    req = ApprovalRequest.objects.create(
        user=owner,
        server=server,
        tool_name="echo",
        arguments={"text": "x"},
        arguments_full='{"text": "x"}',
        arguments_digest="0" * 64,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    client.force_login(owner)
    paths = [
        "/",
        "/approvals/",
        f"/approvals/{req.pk}/",
        "/activity/",
        "/api/v1/approvals",
        f"/api/v1/approvals/{req.pk}",
    ]
    for path in paths:
        with CaptureQueriesContext(connection) as queries:
            res = client.get(path)
        assert res.status_code == 200, path
        writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
        assert writes == [], (path, writes)
    assert client.get(f"/api/v1/approvals/{req.pk}").json()["status"] == "expired"
    assert client.get("/api/v1/approvals?status=expired").json()["count"] == 1
    assert client.get("/api/v1/approvals?status=pending").json()["count"] == 0
    req.refresh_from_db()
    assert req.status == "pending" and req.arguments_full  # nothing was written by reading
    call_command("expire_approvals", stdout=io.StringIO())
    req.refresh_from_db()
    assert req.status == "expired" and req.arguments_full == ""
