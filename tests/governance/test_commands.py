"""Governance management commands."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from governance.models import RequestLog, UsageDaily
from tests.governance.helpers import allow, call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


def test_prune_logs_keeps_usage(owner, owner_api, server):
    allow(owner, server, "add")
    call(owner_api, server, "add", {"a": 1, "b": 1})
    RequestLog.objects.update(created_at=timezone.now() - timedelta(days=40))
    call(owner_api, server, "add", {"a": 1, "b": 1})
    out = io.StringIO()
    call_command("prune_logs", "--days", "30", stdout=out)
    assert "Deleted 1" in out.getvalue()
    assert RequestLog.objects.count() == 1
    assert UsageDaily.objects.get(user=owner).request_count == 2
