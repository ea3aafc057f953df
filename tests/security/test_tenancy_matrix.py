"""Tenancy, generated from the URL resolver: every route with an object in it, every method, every stranger.

An outsider (who is also an org admin of another org) gets 404 — never 200, a redirect or a 403 that
confirms the object exists. A viewer of the object's org can read it but not change it.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.security.conftest import route_params
from tests.security.routes import all_routes, expand

pytestmark = pytest.mark.django_db
WRITE_METHODS = ("post", "put", "patch", "delete")
# Routes where a viewer legitimately writes something of their own about an org object:
# their own tool settings, their own OAuth connection, their own approval decisions.
VIEWER_MAY_WRITE = {
    "mcp-tool-detail",
    "mcp-item-detail",
    "governance:item_settings",
    "governance:tool_settings",
    "mcpsettings:server_connect",
    "mcpsettings:server_disconnect",
}


def object_routes():
    return [r for r in all_routes() if r.params]


def test_every_object_route_is_known(world):
    for route in object_routes():
        expand(route, world["params"])  # raises for a route nobody taught the suite to fill


def _clients(world, user):
    web = Client()
    web.force_login(user)
    api = APIClient()
    api.force_authenticate(user)
    bearer = APIClient()
    from tests.factories import make_api_key

    _, raw = make_api_key(user, name="matrix")
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return {"web": web, "api": api, "bearer": bearer}


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/mcp"))


# Public by design, and the same answer whatever the parameter names (RFC 9728 metadata is read before anyone
# signs in, so it cannot depend on who may see the gateway): checked for that below.
PUBLIC_ROUTES = ("oauth_resource_metadata_gateway",)


def test_public_routes_say_nothing_about_the_object(world, client):
    path = expand(next(r for r in all_routes() if r.name == PUBLIC_ROUTES[0]), world["params"])
    known, unknown = client.get(path).json(), client.get(path.rsplit("/", 1)[0] + "/no-such-gateway").json()
    assert known["resource"].endswith(path.rsplit("/", 1)[1]) and {**known, "resource": ""} == {
        **unknown,
        "resource": "",
    }


def test_outsider_gets_404_on_every_object_route_and_method(world):
    clients = _clients(world, world["outsider"])
    checked = 0
    for route in [r for r in object_routes() if r.name not in PUBLIC_ROUTES]:
        path = expand(route, world["params"])
        kinds = ("api", "bearer") if _is_api(path) else ("web",)
        for kind in kinds:
            client = clients[kind]
            for method in ("get", *WRITE_METHODS):
                res = (
                    getattr(client, method)(path, {}, format="json") if kind != "web" else getattr(client, method)(path)
                )
                checked += 1
                assert res.status_code in (404, 405, 401), (kind, method, path, res.status_code)
                if res.status_code == 401:
                    # Endpoints that authenticate by a bearer token of their own (an API key; RFC 7592's
                    # registration access token) answer a session without one 401.
                    bearer_only = ("mcp_gateway", "oauth2_provider:dcr-register-management")
                    assert route.name in bearer_only and kind != "bearer", (kind, method, path)
    assert checked > 150


def test_viewer_cannot_change_org_objects(world):
    params = route_params(
        world["org_server"], world["gateway"], world["key"], world["approval"], world["org_a"], world["membership"]
    )
    clients = _clients(world, world["viewer"])
    checked = 0
    for route in object_routes():
        if route.name in VIEWER_MAY_WRITE or "pk" not in params.get(route.name, {}):
            continue
        if params[route.name]["pk"] != world["org_server"].pk:
            continue  # gateways and approvals are personal: covered by the outsider test
        path = expand(route, params)
        for kind in ("api",) if _is_api(path) else ("web",):
            client = clients[kind]
            for method in WRITE_METHODS:
                res = (
                    getattr(client, method)(path, {}, format="json") if kind == "api" else getattr(client, method)(path)
                )
                checked += 1
                assert res.status_code in (403, 404, 405), (kind, method, path, res.status_code)
    assert checked >= 20
    org_route = expand(next(r for r in all_routes() if r.name == "accounts:org_member"), params)
    assert clients["web"].post(org_route, {"role": "owner"}).status_code == 403
    world["org_server"].refresh_from_db()
    assert world["org_server"].deleted_at is None and world["org_server"].name == "Team"
