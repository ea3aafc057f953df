"""Every route of the project, from the URL resolver, with its parameters filled from a world of objects.

A route whose parameters this module cannot fill makes `expand` raise: a new endpoint cannot slip
past the security suite because nobody remembered to add it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

SKIP_PREFIXES = ("admin/", "static/")  # the admin is covered through its registry


@dataclass
class Route:
    name: str
    pattern: str
    params: list[str]


def all_routes() -> list[Route]:
    out: list[Route] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = namespace
                if p.namespace:
                    ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                full = prefix + str(p.pattern)
                if full.startswith(SKIP_PREFIXES):
                    continue
                name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or full)
                out.append(Route(name=name, pattern=full, params=list(p.pattern.converters)))

    walk(get_resolver().url_patterns, "", "")
    return out


def _org_slug(world: dict) -> str:
    return world["accounts:org_detail"]["slug"]


def _invitation(world: dict) -> dict:
    """An open invitation of the world's org (to a stranger's email), made once through the service."""
    if "_invitation" not in world:
        from accounts import services
        from accounts.models import Organization, Role

        org = Organization.objects.get(slug=_org_slug(world))
        inviter = org.memberships.filter(role=Role.OWNER).select_related("user").first().user
        invitation, raw = services.invitation_create(
            actor=inviter, organization=org, email="invitee@matrix.test", role=Role.VIEWER
        )
        world["_invitation"] = {"slug": org.slug, "invitation_id": invitation.pk, "token": raw}
    return world["_invitation"]


# Routes whose objects the world does not hold, filled from what it does (on first use).
ROUTE_HINTS = {
    "accounts:org_leave": lambda world: {"slug": _org_slug(world)},
    "accounts:org_invitation_revoke": _invitation,
    "accounts:invitation_respond": _invitation,
    "accounts:invitation": _invitation,
}


def expand(route: Route, world: dict) -> str:
    """The route's path with its parameters filled from `world` (keyed by route name, then param)."""
    path = route.pattern
    fills = world.get(route.name)
    if fills is None and route.params and route.name in ROUTE_HINTS:
        fills = world[route.name] = ROUTE_HINTS[route.name](world)
    if route.params and fills is None:
        raise KeyError(f"No objects to fill route {route.name} ({route.pattern}); add it to the world.")
    import re

    for param in route.params:
        value = str(fills[param])
        path = re.sub(r"<(?:\w+:)?" + param + ">", value, path)
    return "/" + path.lstrip("^").rstrip("$")
