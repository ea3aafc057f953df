"""Approvers see what they approve: the full arguments, not the redacted, truncated preview.

Pen-test finding: the inbox and the API showed the stored preview (secret-named keys redacted, long
strings cut at 4,000 characters) while "once" approved the call with the full, hidden arguments — a
`DROP TABLE` past the cut, or a value under `password`. A real SDK peer runs the approved call.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from governance import approval_arguments
from governance.models import ApprovalRequest, ToolApproval
from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.conftest import key_client
from tests.factories import make_api_key, make_server
from tests.peers.sdk import Peer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
CALL = "/api/v1/tools/call"
CANARY = "canary-cred-5b0e93d1c7"  # the server's stored bearer token
LONG = "a" * 4990 + "DROP TABLE"  # 5,000 characters: the preview cuts at 4,000
PASSWORD = "hunter2-approval-pw"
ARGS = {"text": LONG, "password": PASSWORD, "note": f"use {CANARY} here"}


@pytest.fixture(scope="module")
def peer():
    with Peer("json", token=CANARY) as running:
        yield running


@pytest.fixture
def server(owner, peer):
    s = make_server(owner, name="Peer", endpoint_url=peer.url, auth_type="bearer", token=CANARY)
    assert discovery.discover(s).ok
    return McpServer.objects.get(pk=s.pk)


def ask(client, server, tool="echo", arguments=None) -> ApprovalRequest:
    res = client.post(CALL, {"server": str(server.pk), "tool": tool, "arguments": arguments or {}}, format="json")
    assert res.status_code == 202, res.content
    return ApprovalRequest.objects.get(pk=res.json()["approval_id"])


def raw_column(req: ApprovalRequest) -> str:
    """What the database itself holds in the encrypted column."""
    pk = ApprovalRequest._meta.pk.get_db_prep_value(req.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT arguments_full FROM governance_approvalrequest WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_request_keeps_the_full_arguments_encrypted(owner_api, server):
    req = ask(owner_api, server, arguments=ARGS)
    # The preview is what the finding was about: the tail and the password are not in it.
    preview = json.dumps(req.arguments)
    assert "DROP TABLE" not in preview and PASSWORD not in preview and CANARY not in preview
    assert json.loads(req.arguments_full) == ARGS
    stored = raw_column(req)
    assert stored and PASSWORD not in stored and "DROP TABLE" not in stored and CANARY not in stored


def test_the_inbox_shows_the_full_arguments_with_secret_keys_masked(client, owner, owner_api, server):
    req = ask(owner_api, server, arguments=ARGS)
    client.force_login(owner)
    res = client.get("/approvals/")
    html = res.content.decode()
    assert LONG in html  # all 5,000 characters, the DROP TABLE included
    assert PASSWORD not in html and "[HIDDEN]" in html and "Reveal hidden values" in html
    assert CANARY not in html and "[STORED CREDENTIAL]" in html
    assert "The stored preview was truncated" in html and f"{len(req.arguments_full)} characters" in html
    # Values are hidden, so "Allow once" is offered only once they are revealed (review finding).
    assert 'name="arguments_digest"' not in html and 'value="once"' not in html
    assert "reveal the hidden values</a> first" in html
    assert f'href="/approvals/{req.pk}/?reveal=1"' in html
    assert "no-store" in res["Cache-Control"]
    revealed = client.get(f"/approvals/{req.pk}/", {"reveal": "1"}).content.decode()
    assert f'name="arguments_digest" value="{req.arguments_digest}"' in revealed and 'value="once"' in revealed


def test_reveal_shows_hidden_values_to_the_owner_only(client, owner, teammate, outsider, server):
    _, raw_key = make_api_key(owner, name="agent")
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    req = ask(agent, server, arguments={**ARGS, "agent": f"my key: {raw_key}"})
    client.force_login(owner)
    res = client.get(f"/approvals/{req.pk}/", {"reveal": "1"})
    assert res.status_code == 200 and "no-store" in res["Cache-Control"]
    html = res.content.decode()
    assert PASSWORD in html and LONG in html and "Hide them" in html
    # The server's stored credential and the agent's API key are Gatehouse's secrets: masked even revealed.
    assert CANARY not in html and "use [STORED CREDENTIAL] here" in html
    assert raw_key not in html and "my key: [STORED CREDENTIAL]" in html
    unrevealed = client.get(f"/approvals/{req.pk}/").content.decode()
    assert PASSWORD not in unrevealed and LONG in unrevealed
    for stranger in (teammate, outsider):
        client.force_login(stranger)
        assert client.get(f"/approvals/{req.pk}/", {"reveal": "1"}).status_code == 404


def test_deciding_on_other_arguments_than_shown_is_refused(client, owner, owner_api, server, peer):
    req = ask(owner_api, server, arguments=ARGS)
    client.force_login(owner)
    url = f"/approvals/{req.pk}/decide/"
    res = client.post(url, {"decision": "once", "arguments_digest": "0" * 64}, follow=True)
    assert "not the arguments you were shown" in res.content.decode()
    for wrong in ("f" * 64, "é" * 10):
        api = owner_api.post(
            f"/api/v1/approvals/{req.pk}/decide", {"decision": "once", "arguments_digest": wrong}, format="json"
        )
        assert api.status_code == 400 and "arguments_digest" in api.json()
    # The preview hides part of them, so an API "once" must prove what it saw.
    api = owner_api.post(f"/api/v1/approvals/{req.pk}/decide", {"decision": "once"}, format="json")
    assert api.status_code == 400 and "arguments_digest" in api.json()
    req.refresh_from_db()
    assert req.status == "pending" and not ToolApproval.objects.filter(user=owner).exists()

    # With the digest of what was shown, "once" lets exactly those arguments run, once.
    res = client.post(url, {"decision": "once", "arguments_digest": req.arguments_digest}, follow=True)
    assert "Allow once: echo on Peer" in res.content.decode()
    retry = owner_api.post(
        CALL, {"server": str(server.pk), "tool": "echo", "arguments": ARGS, "approval_id": str(req.pk)}, format="json"
    )
    assert retry.status_code == 200, retry.content
    assert peer.server.calls[-1] == ("echo", {"text": LONG})
    # Used up: the full arguments are forgotten as the once-grant is used.
    req.refresh_from_db()
    assert req.status == "consumed" and req.arguments_full == "" and raw_column(req) == ""


def test_api_says_when_the_preview_is_incomplete_and_reveals_on_request(owner, owner_api, server):
    req = ask(owner_api, server, arguments=ARGS)
    plain = ask(owner_api, server, tool="mood")
    body = owner_api.get(f"/api/v1/approvals/{req.pk}").json()
    assert body["arguments_complete"] is False and body["arguments_available"] is True
    assert body["arguments_full"] is None and body["arguments_digest"] is None  # only the revealed view gives it
    assert body["arguments"]["password"] == "[REDACTED]"  # the preview keeps its contract
    assert owner_api.get(f"/api/v1/approvals/{plain.pk}").json()["arguments_complete"] is True
    listed = {a["id"]: a for a in owner_api.get("/api/v1/approvals").json()["approvals"]}
    assert listed[str(req.pk)]["arguments_complete"] is False and listed[str(plain.pk)]["arguments_complete"] is True

    res = owner_api.get(f"/api/v1/approvals/{req.pk}", {"reveal": "true"})
    assert res.status_code == 200 and "no-store" in res["Cache-Control"]
    assert res.json()["arguments_full"] == {**ARGS, "note": "use [STORED CREDENTIAL] here"}
    assert res.json()["arguments_digest"] == req.arguments_digest
    # An agent's key (read/call) may not reveal, nor decide.
    agent = key_client(owner, scopes=("read", "call"))
    assert agent.get(f"/api/v1/approvals/{req.pk}", {"reveal": "true"}).status_code == 403

    ok = owner_api.post(
        f"/api/v1/approvals/{req.pk}/decide",
        {"decision": "once", "arguments_digest": req.arguments_digest},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


def test_deny_and_never_forget_the_full_arguments(owner, owner_api, server):
    denied = ask(owner_api, server, arguments=ARGS)
    never = ask(owner_api, server, tool="delete_everything", arguments={"confirm": True, "token": "tok-123456"})
    assert raw_column(denied) and raw_column(never)
    assert (
        owner_api.post(f"/api/v1/approvals/{denied.pk}/decide", {"decision": "deny"}, format="json").status_code == 200
    )
    assert (
        owner_api.post(f"/api/v1/approvals/{never.pk}/decide", {"decision": "never"}, format="json").status_code == 200
    )
    assert raw_column(denied) == "" and raw_column(never) == ""
    audit = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert PASSWORD not in audit and "DROP TABLE" not in audit and "tok-123456" not in audit


def test_expired_requests_forget_the_full_arguments(client, owner, owner_api, server):
    req = ask(owner_api, server, arguments=ARGS)
    ApprovalRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Reads see it expired (and reveal nothing) without writing; the expiry command writes it down.
    body = owner_api.get(f"/api/v1/approvals/{req.pk}?reveal=true").json()
    assert body["status"] == "expired" and body["arguments_full"] is None
    assert raw_column(req) != ""
    call_command("expire_approvals", stdout=io.StringIO())
    assert raw_column(req) == ""
    assert ApprovalRequest.objects.get(pk=req.pk).status == "expired"


def test_once_is_refused_when_the_full_arguments_are_not_available(client, owner, owner_api, server):
    """A request from before this change (or already forgotten): nothing hidden is approved implicitly."""
    req = ask(owner_api, server, arguments=ARGS)
    ApprovalRequest.objects.filter(pk=req.pk).update(arguments_full="")
    client.force_login(owner)
    html = client.get("/approvals/").content.decode()
    assert "The full arguments are not available" in html and 'value="once"' not in html
    res = client.post(
        f"/approvals/{req.pk}/decide/", {"decision": "once", "arguments_digest": req.arguments_digest}, follow=True
    )
    assert "full arguments are not available" in res.content.decode()
    api = owner_api.post(
        f"/api/v1/approvals/{req.pk}/decide",
        {"decision": "once", "arguments_digest": req.arguments_digest},
        format="json",
    )
    assert api.status_code == 400 and "not available" in str(api.json())
    assert not ToolApproval.objects.filter(user=owner).exists()
    assert owner_api.post(f"/api/v1/approvals/{req.pk}/decide", {"decision": "deny"}, format="json").status_code == 200
    # An old request whose preview is complete hides nothing: "once" stays possible.
    plain = ask(owner_api, server, tool="delete_everything", arguments={"confirm": True})
    ApprovalRequest.objects.filter(pk=plain.pk).update(arguments_full="")
    assert (
        owner_api.post(f"/api/v1/approvals/{plain.pk}/decide", {"decision": "once"}, format="json").status_code == 200
    )


def test_the_admin_never_shows_the_full_arguments(client, owner, owner_api, server, django_user_model):
    req = ask(owner_api, server, arguments=ARGS)
    root = django_user_model.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    res = client.get(f"/admin/governance/approvalrequest/{req.pk}/change/")
    assert res.status_code == 200
    html = res.content.decode()
    assert PASSWORD not in html and "DROP TABLE" not in html and "arguments_full" not in html


def test_stored_text_is_exact_even_for_text_that_is_not_valid_unicode():
    """The column must always take the text: an unpaired surrogate is written as a \\u escape, same value."""
    for arguments in (ARGS, {"text": "half \ud800 a pair", "ü": ["ß", 1.5, None]}):
        text = approval_arguments.full_arguments_text(arguments)
        assert json.loads(text) == arguments
        text.encode("utf-8")
