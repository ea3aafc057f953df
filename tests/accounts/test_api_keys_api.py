from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEvent, User, api_key_digest
from tests.conftest import key_client
from tests.factories import GuestFactory, make_api_key

URL = "/api/v1/api-keys"
pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_create_returns_the_raw_key_once_and_stores_only_its_digest(owner, owner_api):
    res = owner_api.post(URL, {"name": "agent", "scopes": ["read", "call"]}, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    raw = body["key"]
    assert raw.startswith("gh_") and body["prefix"] == raw[:11] and body["scopes"] == ["read", "call"]
    assert res["Cache-Control"] == "no-store"
    row = ApiKey.objects.get(pk=body["id"])
    assert row.digest == api_key_digest(raw) and raw not in row.digest
    # The raw key never shows again: not in the list, not in the detail, not in the audit trail.
    listing = owner_api.get(URL)
    assert raw not in listing.content.decode() and "key" not in listing.json()["api_keys"][0]
    assert raw not in owner_api.get(f"{URL}/{row.pk}").content.decode()
    assert all(raw not in str(e.changes) for e in AuditEvent.objects.all())
    # And it works.
    assert bearer(raw).get(URL).status_code == 200


def test_list_shape_and_only_own_keys(owner, owner_api, outsider):
    make_api_key(outsider, name="theirs")
    res = owner_api.get(URL)
    assert res.status_code == 200
    body = res.json()
    assert body["count"] == 1 == len(body["api_keys"])
    assert set(body["api_keys"][0]) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "created_at",
        "is_active",
    }
    assert body["api_keys"][0]["name"] == "test key"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"scopes": ["read"]}, "name"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["admin"]}, "scopes"),
        ({"name": "ok", "scopes": ["read"], "expires_at": "yesterday"}, "expires_at"),
    ],
)
def test_create_bad_input_is_a_400_naming_the_field(owner_api, payload, field):
    res = owner_api.post(URL, payload, format="json")
    assert res.status_code == 400
    assert field in res.json()


def test_create_with_an_expiry_in_the_past_is_refused(owner_api):
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    res = owner_api.post(URL, {"name": "old", "scopes": ["read"], "expires_at": past}, format="json")
    assert res.status_code == 400 and "expires_at" in res.json()


def test_a_key_cannot_mint_a_key_with_more_scopes(owner):
    client = key_client(owner, scopes=("read", "manage"))
    res = client.post(URL, {"name": "wider", "scopes": ["read", "call"]}, format="json")
    assert res.status_code == 400 and "call" in res.json()["scopes"][0]
    assert not ApiKey.objects.filter(name="wider").exists()
    assert client.post(URL, {"name": "same", "scopes": ["read"]}, format="json").status_code == 201


def test_a_short_lived_key_cannot_mint_a_key_that_outlives_it(owner):
    parent, raw = make_api_key(owner, scopes=("read", "manage"), expires_at=timezone.now() + timedelta(hours=1))
    client = bearer(raw)
    # No expiry asked for: the child expires with its parent, never "never".
    res = client.post(URL, {"name": "child", "scopes": ["read"]}, format="json")
    assert res.status_code == 201, res.content
    child = ApiKey.objects.get(pk=res.json()["id"])
    assert child.expires_at == parent.expires_at
    for payload in ({"expires_at": None}, {"expires_at": (parent.expires_at + timedelta(days=30)).isoformat()}):
        res = client.post(URL, {"name": "longer", "scopes": ["read"], **payload}, format="json")
        if payload["expires_at"] is None:
            assert res.status_code == 201 and res.json()["expires_at"] is not None
            continue
        assert res.status_code == 400 and list(res.json()) == ["expires_at"], res.content
    assert not ApiKey.objects.filter(name="longer", expires_at__gt=parent.expires_at).exists()
    sooner = (parent.expires_at - timedelta(minutes=30)).isoformat()
    res = client.post(URL, {"name": "sooner", "scopes": ["read"], "expires_at": sooner}, format="json")
    assert res.status_code == 201
    assert ApiKey.objects.get(name="sooner").expires_at < parent.expires_at
    audit = AuditEvent.objects.get(action="api_key.create", target_id=str(child.pk))
    assert audit.changes["parent_key"] == [None, str(parent.pk)]


def test_a_key_without_expiry_mints_keys_as_before_and_sessions_are_unchanged(owner):
    client = key_client(owner)  # every scope, no expiry
    res = client.post(URL, {"name": "forever", "scopes": ["read", "call", "manage"]}, format="json")
    assert res.status_code == 201 and res.json()["expires_at"] is None
    make_api_key(owner, name="short", expires_at=timezone.now() + timedelta(hours=1))
    session = APIClient()
    session.force_login(owner)
    res = session.post(URL, {"name": "human", "scopes": ["read", "call", "manage"]}, format="json")
    assert res.status_code == 201 and res.json()["expires_at"] is None
    later = (timezone.now() + timedelta(days=400)).isoformat()
    assert session.post(URL, {"name": "far", "scopes": ["read"], "expires_at": later}, format="json").status_code == 201


def test_the_service_applies_the_parent_rules_to_every_caller(owner):
    from django.core.exceptions import ValidationError

    from accounts import services

    parent, _ = make_api_key(owner, scopes=("read",), expires_at=timezone.now() + timedelta(hours=1))
    with pytest.raises(ValidationError) as info:
        services.api_key_create(actor=owner, name="x", scopes=["read", "call"], parent_key=parent)
    assert "scopes" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.api_key_create(
            actor=owner, name="x", scopes=["read"], expires_at=timezone.now() + timedelta(days=1), parent_key=parent
        )
    assert "expires_at" in info.value.message_dict
    child, _ = services.api_key_create(actor=owner, name="x", scopes=["read"], parent_key=parent)
    assert child.expires_at == parent.expires_at


def test_an_expired_guests_keys_stop_working_on_the_api_and_on_mcp():
    guest = GuestFactory()
    key, raw = make_api_key(guest, scopes=("read", "call"))
    assert key.expires_at is None
    assert bearer(raw).get(URL).status_code == 200
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert bearer(raw).post("/mcp", mcp, format="json").status_code != 401
    User.objects.filter(pk=guest.pk).update(guest_expires_at=timezone.now() - timedelta(seconds=1))
    res = bearer(raw).get(URL)
    assert res.status_code == 401
    assert res.json()["detail"] == "This API key belongs to a guest session that has expired."
    res = bearer(raw).post("/mcp", mcp, format="json")
    assert res.status_code == 401 and "guest session that has expired" in res.json()["error_description"]


def test_scopes_are_enforced(owner):
    read_only = key_client(owner, scopes=("read",))
    assert read_only.get(URL).status_code == 200
    res = read_only.post(URL, {"name": "x", "scopes": ["read"]}, format="json")
    assert res.status_code == 403 and "manage" in res.json()["detail"]
    key = ApiKey.objects.filter(user=owner).first()
    assert read_only.delete(f"{URL}/{key.pk}").status_code == 403
    call_only = key_client(owner, scopes=("call",))
    assert call_only.get(URL).status_code == 403


def test_revoke_is_204_and_the_key_stops_working(owner, owner_api):
    key, raw = make_api_key(owner, name="doomed")
    assert bearer(raw).get(URL).status_code == 200
    assert owner_api.delete(f"{URL}/{key.pk}").status_code == 204
    key.refresh_from_db()
    assert key.revoked_at is not None
    res = bearer(raw).get(URL)
    assert res.status_code == 401 and res.json()["detail"] == "This API key has been revoked."
    assert AuditEvent.objects.filter(action="api_key.revoke", target_id=str(key.pk)).count() == 1


def test_outsider_gets_404_for_someone_elses_key(owner, outsider_api):
    key, _ = make_api_key(owner)
    assert outsider_api.get(f"{URL}/{key.pk}").status_code == 404
    assert outsider_api.delete(f"{URL}/{key.pk}").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_unknown_malformed_and_missing_keys_are_401_with_a_clear_detail(api_client):
    res = api_client.get(URL)
    assert res.status_code == 401 and res["WWW-Authenticate"].startswith("Bearer")
    res = bearer("gh_not-a-real-key").get(URL)
    assert res.status_code == 401 and res.json() == {"detail": "Invalid API key."}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    res = client.get(URL)
    assert res.status_code == 401 and "Bearer" in res.json()["detail"]


def test_expired_key_is_401(owner):
    key, raw = make_api_key(owner)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    res = bearer(raw).get(URL)
    assert res.status_code == 401 and res.json()["detail"] == "This API key has expired."


def test_inactive_user_key_is_401(owner):
    _, raw = make_api_key(owner)
    owner.is_active = False
    owner.save()
    assert bearer(raw).get(URL).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(owner, django_assert_num_queries):
    key, raw = make_api_key(owner)
    client = bearer(raw)
    client.get(URL)
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    client.get(URL)
    key.refresh_from_db()
    assert key.last_used_at == first  # within the minute: unchanged, and no UPDATE was issued
    with django_assert_num_queries(2):  # key lookup + list; no write
        client.get(URL)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get(URL)
    key.refresh_from_db()
    assert key.last_used_at > first


def test_failed_api_keys_are_rate_limited_per_ip(settings, owner):
    settings.API_KEY_RATE_LIMIT = (3, 60)
    _, good = make_api_key(owner)
    bad = bearer("gh_wrong")
    for _ in range(3):
        assert bad.get(URL).status_code == 401
    res = bad.get(URL)
    assert res.status_code == 429 and "Too many" in res.json()["detail"]
    assert bearer(good).get(URL).status_code == 429  # same IP, locked out for the window


def test_session_auth_needs_csrf(owner):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.get(URL).status_code == 200
    res = client.post(URL, {"name": "s", "scopes": ["read"]}, format="json")
    assert res.status_code == 403 and "CSRF" in res.json()["detail"]


def test_session_user_can_create(owner):
    client = APIClient()
    client.force_login(owner)
    assert client.post(URL, {"name": "s", "scopes": ["read"]}, format="json").status_code == 201


def test_schema_docs_and_healthz(client):
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"/api/v1/api-keys" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}


def _redis_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_rate_limit_is_shared_through_redis(settings, owner):
    """With CACHE_URL=redis://…, the counter lives in Redis, so every web process sees it."""
    import redis
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
            "KEY_PREFIX": "gatehouse-test",
        }
    }
    caches["default"].clear()
    settings.API_KEY_RATE_LIMIT = (2, 60)
    bad = bearer("gh_wrong")
    assert bad.get(URL).status_code == 401
    assert bad.get(URL).status_code == 401
    assert bad.get(URL).status_code == 429
    keys = redis.Redis(host="127.0.0.1", port=6379, db=15).keys("gatehouse-test:*rl:apikey:*")
    assert len(keys) == 1
    caches["default"].clear()
