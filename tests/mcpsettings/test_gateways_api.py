import pytest

from accounts.models import AuditEvent
from mcpsettings.models import Gateway
from tests.conftest import key_client
from tests.factories import make_server

URL = "/api/v1/gateways"
POOL = ["https://mcp1.example.com", "https://mcp2.example.com"]
pytestmark = pytest.mark.django_db


def test_create_without_pool_uses_this_sites_mcp_path(owner, owner_api):
    server = make_server(owner)
    res = owner_api.post(URL, {"name": "Work", "source_ids": [str(server.pk)]}, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["endpoint"] == f"/mcp/{body['slug']}" and body["endpoint_url"].endswith(body["endpoint"])
    assert body["source_ids"] == [str(server.pk)]
    listing = owner_api.get(URL).json()
    assert listing["count"] == 1 and listing["gateways"][0]["id"] == body["id"]


def test_pool_assignment_and_exhaustion(settings, owner, owner_api, outsider_api):
    settings.MCP_GATEWAY_URL_POOLS = POOL
    a = owner_api.post(URL, {"name": "A"}, format="json").json()
    b = outsider_api.post(URL, {"name": "B"}, format="json").json()
    assert {a["endpoint"], b["endpoint"]} == set(POOL)
    res = owner_api.post(URL, {"name": "C"}, format="json")
    assert res.status_code == 409 and "pool" in res.json()["detail"]
    # Soft delete keeps the endpoint (restore gives it back); hard delete frees it.
    assert owner_api.delete(f"{URL}/{a['id']}").status_code == 204
    assert owner_api.post(URL, {"name": "C"}, format="json").status_code == 409
    assert owner_api.delete(f"{URL}/{a['id']}?hard=true").status_code == 204
    res = owner_api.post(URL, {"name": "C"}, format="json")
    assert res.status_code == 201 and res.json()["endpoint"] == a["endpoint"]


def test_sources_add_and_remove(owner, owner_api, outsider):
    mine = make_server(owner, name="Mine")
    theirs = make_server(outsider, name="Theirs")
    gw = owner_api.post(URL, {"name": "GW"}, format="json").json()
    res = owner_api.post(f"{URL}/{gw['id']}/servers", {"server_id": str(mine.pk)}, format="json")
    assert res.status_code == 200 and res.json()["source_ids"] == [str(mine.pk)]
    res = owner_api.post(f"{URL}/{gw['id']}/servers", {"server_id": str(theirs.pk)}, format="json")
    assert res.status_code == 400 and "source_ids" in res.json()
    res = owner_api.post(f"{URL}/{gw['id']}/servers", {"server_id": "not-a-uuid"}, format="json")
    assert res.status_code == 400
    res = owner_api.delete(f"{URL}/{gw['id']}/servers", {"server_id": str(mine.pk)}, format="json")
    assert res.status_code == 200 and res.json()["source_ids"] == []
    owner_api.post(f"{URL}/{gw['id']}/servers", {"server_id": str(mine.pk)}, format="json")
    res = owner_api.delete(f"{URL}/{gw['id']}/servers/{mine.pk}")
    assert res.status_code == 200 and res.json()["source_ids"] == []
    assert owner_api.delete(f"{URL}/{gw['id']}/servers/{mine.pk}").status_code == 404
    actions = list(AuditEvent.objects.filter(target_id=gw["id"]).values_list("action", flat=True))
    assert actions.count("gateway.add_source") == 2 and actions.count("gateway.remove_source") == 2


def test_patch_soft_delete_restore(owner, owner_api):
    gw = owner_api.post(URL, {"name": "GW"}, format="json").json()
    res = owner_api.patch(f"{URL}/{gw['id']}", {"name": "Renamed"}, format="json")
    assert res.status_code == 200 and res.json()["name"] == "Renamed"
    assert owner_api.patch(f"{URL}/{gw['id']}", {"name": ""}, format="json").status_code == 400
    assert owner_api.delete(f"{URL}/{gw['id']}").status_code == 204
    assert owner_api.get(f"{URL}/{gw['id']}").status_code == 404
    assert owner_api.get(URL, {"deleted": "true"}).json()["count"] == 1
    res = owner_api.post(f"{URL}/{gw['id']}/restore")
    assert res.status_code == 200 and res.json()["deleted_at"] is None
    assert owner_api.post(URL, {"name": "renamed"}, format="json").status_code == 400  # name taken


def test_outsider_gets_404_on_every_gateway_endpoint(owner, owner_api, outsider_api):
    server = make_server(owner)
    gw = owner_api.post(URL, {"name": "GW", "source_ids": [str(server.pk)]}, format="json").json()
    base = f"{URL}/{gw['id']}"
    assert outsider_api.get(base).status_code == 404
    assert outsider_api.patch(base, {"name": "x"}, format="json").status_code == 404
    assert outsider_api.delete(base).status_code == 404
    assert outsider_api.delete(f"{base}?hard=true").status_code == 404
    assert outsider_api.post(f"{base}/restore").status_code == 404
    assert outsider_api.post(f"{base}/servers", {"server_id": str(server.pk)}, format="json").status_code == 404
    assert outsider_api.delete(f"{base}/servers/{server.pk}").status_code == 404
    assert outsider_api.get(URL).json()["count"] == 0
    assert Gateway.objects.get(pk=gw["id"]).name == "GW"


def test_viewer_key_cannot_create_gateways(owner):
    client = key_client(owner, scopes=("read",))
    assert client.post(URL, {"name": "x"}, format="json").status_code == 403
