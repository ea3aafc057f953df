"""Property tests: what a warm worker remembers always agrees with the queryset selectors read afresh, over
random sequences of changes to every layer that decides a call (org and personal permissions, standing
approvals and their expiry, roles and membership, soft-deletes and switches, removed and changed tools,
revoked keys); and the DRF-free reading of a call's body accepts only what the serializer accepts unchanged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import APIException

from accounts import epoch, ratelimit
from accounts.authentication import resolve_api_key
from accounts.models import ApiKey, Membership, Role
from governance.agents.rest import plain_call_data
from governance.api.serializers import ToolCallSerializer
from governance.catalog import catalog_views
from governance.models import ToolApproval, ToolPermission
from governance.selectors import callable_server, slugs_for, tool_view, tool_views, usable_servers
from mcpsettings.models import McpServer, McpTool
from tests.factories import make_api_key, make_server

pytestmark = pytest.mark.django_db
PUBLIC = "https://93.184.216.34/mcp"  # never contacted


def _now():
    from django.utils import timezone

    return timezone.now()


def set_layer(ctx, server_key, layer, value):
    server = ctx[server_key]
    if layer == "org" and server.organization is None:
        return  # a personal server has no org layer
    who = {"organization": server.organization} if layer == "org" else {"user": ctx["member"]}
    rows = ToolPermission.objects.filter(server=server, tool_name="t", **who)
    if value is None:
        rows.delete()
    elif not rows.update(is_enabled=value):
        ToolPermission.objects.bulk_create([ToolPermission(server=server, tool_name="t", is_enabled=value, **who)])


def set_approval(ctx, server_key, kind):
    rows = ToolApproval.objects.filter(user=ctx["member"], server=ctx[server_key], tool_name="t").exclude(
        approval_type="once"
    )
    rows.delete()
    if kind == "always-expired":
        expires = _now() - timedelta(seconds=1)
        ToolApproval.objects.create(
            user=ctx["member"], server=ctx[server_key], tool_name="t", approval_type="always", expires_at=expires
        )
    elif kind is not None:
        ToolApproval.objects.create(user=ctx["member"], server=ctx[server_key], tool_name="t", approval_type=kind)


def set_server(ctx, server_key, field, value):
    McpServer.objects.filter(pk=ctx[server_key].pk).update(**{field: value})


def set_tool(ctx, server_key, field, value):
    McpTool.objects.filter(server=ctx[server_key], name="t").update(**{field: value})


def set_membership(ctx, role):
    rows = Membership.objects.filter(user=ctx["member"], organization=ctx["org"])
    if role is None:
        rows.delete()
    elif not rows.update(role=role):
        Membership.objects.create(user=ctx["member"], organization=ctx["org"], role=role)


def set_key(ctx, revoked):
    ApiKey.objects.filter(pk=ctx["key"].pk).update(revoked_at=_now() if revoked else None)


servers = st.sampled_from(["org_server", "own_server"])
CHANGE = st.one_of(
    st.tuples(st.just(set_layer), servers, st.sampled_from(["org", "user"]), st.sampled_from([None, True, False])),
    st.tuples(st.just(set_approval), servers, st.sampled_from([None, "always", "never", "always-expired"])),
    st.tuples(
        st.just(set_server),
        servers,
        st.sampled_from(["deleted_at", "is_active", "new_tools_enabled", "auto_allow_read_only"]),
        st.booleans(),
    ),
    st.tuples(
        st.just(set_tool), servers, st.sampled_from(["removed_at", "needs_review", "annotations"]), st.booleans()
    ),
    st.tuples(st.just(set_membership), st.sampled_from([None, Role.VIEWER, Role.DEVELOPER, Role.OWNER])),
    st.tuples(st.just(set_key), st.booleans()),
)


def apply(ctx, change):
    fn, *args = change
    if fn in (set_server, set_tool):
        key, field, flag = args
        value = {
            "deleted_at": _now() if flag else None,
            "removed_at": _now() if flag else None,
            "annotations": {"readOnlyHint": flag},
        }.get(field, flag)
        fn(ctx, key, field, value)
    else:
        fn(ctx, *args)


def decisions(ctx) -> dict:
    """Everything a call decides with, as plain values."""
    member = ctx["member"]
    ratelimit.reset("apikey", "127.0.0.1")  # failures are counted: both readings start from the same count
    try:
        key = resolve_api_key(ctx["raw"], "127.0.0.1").pk
    except APIException as exc:
        key = type(exc).__name__
    out = {"key": key, "slugs": {str(k): v for k, v in slugs_for(member).items()}}
    usable = usable_servers(member)
    out["usable"] = sorted(str(s.pk) for s in usable)
    out["catalog"] = sorted((str(v.server.pk), v.name, v.enabled, v.approval) for v in catalog_views(member, usable))
    for name in ("org_server", "own_server"):
        server = callable_server(member, str(ctx[name].pk))
        view = tool_view(member, server, "t", light=True) if server is not None else None
        out[name] = (server is not None, view and (view.enabled, view.approval, view.org_enabled, view.user_enabled))
    return out


@pytest.fixture
def ctx(org, owner, teammate):
    org_server = make_server(owner, name="Team", endpoint_url=PUBLIC, organization=org)
    own_server = make_server(teammate, name="Mine", endpoint_url=PUBLIC)
    for server in (org_server, own_server):
        McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=_now(), annotations={})
    key, raw = make_api_key(teammate)
    return {"org": org, "member": teammate, "org_server": org_server, "own_server": own_server, "key": key, "raw": raw}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(CHANGE, min_size=1, max_size=6))
def test_the_memo_agrees_with_fresh_selectors_after_any_changes(ctx, changes):
    with epoch.cached_reads():
        decisions(ctx)  # warm this worker
    for change in changes:
        apply(ctx, change)
        with epoch.cached_reads():
            remembered = decisions(ctx)
        fresh = decisions(ctx)  # outside cached_reads: straight from the querysets
        assert remembered == fresh, change
        # and the catalog rows the listing remembers are the rows the selector reads
        usable = usable_servers(ctx["member"])
        listed = {(str(v.server.pk), v.name, v.enabled, v.approval) for v in tool_views(ctx["member"], usable)}
        assert set(fresh["catalog"]) == listed


TEXT = st.one_of(st.text(max_size=12), st.sampled_from([" pad", "pad ", "", "a\x00b", "x" * 301, "srv__tool"]))
VALUE = st.one_of(st.none(), st.integers(), st.booleans(), TEXT, st.lists(st.integers(), max_size=2))
BODY = st.one_of(
    st.dictionaries(
        st.sampled_from(["server", "tool", "arguments", "approval_id", "extra"]),
        st.one_of(VALUE, st.dictionaries(st.text(max_size=5), VALUE, max_size=3)),
    ),
    VALUE,
)


@settings(max_examples=400, deadline=None)
@given(body=BODY)
def test_the_plain_reading_of_a_call_accepts_only_what_the_serializer_accepts_unchanged(body):
    plain = plain_call_data(body)
    if plain is None:
        return  # DRF answers it, with its own errors
    ser = ToolCallSerializer(data=body)
    assert ser.is_valid(), ser.errors
    expected = dict(ser.validated_data)
    assert plain == expected
