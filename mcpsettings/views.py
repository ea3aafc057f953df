from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from accounts.errors import Conflict, NotVisible
from accounts.models import Organization
from accounts.ratelimit import client_ip
from accounts.views import apply_errors
from accounts.web import public_url
from mcpsettings import discovery, hooks, oauth, selectors, services
from mcpsettings.forms import (
    GLOBAL,
    OAUTH_FIELDS,
    PERSONAL,
    GatewayForm,
    GatewaySourceForm,
    McpServerForm,
    OrgContextForm,
)
from mcpsettings.models import AuthType, Credential, Gateway, McpServer, McpTool, OrgServerContext
from mcpsettings.snippets import client_snippets


def _server(request: HttpRequest, pk, *, include_deleted: bool = False) -> McpServer:
    try:
        return selectors.server_for(request.user, pk, include_deleted=include_deleted)
    except McpServer.DoesNotExist:
        raise Http404("No such server.") from None


def _status(form) -> int:
    return 400 if form.is_bound and form.errors else 200


def _discover_and_tell(request: HttpRequest, server: McpServer, *, force: bool = False) -> None:
    ip = client_ip(request)
    result = (
        discovery.discover(server, actor=request.user, ip=ip)
        if force
        else discovery.discover_after_save(server, actor=request.user, ip=ip)
    )
    if result is None:
        return
    if result.ok:
        parts = [f"{result.tools_count} tool{'s' if result.tools_count != 1 else ''} found"]
        for label, names in (("new", result.added), ("changed", result.changed), ("removed", result.removed)):
            if names and (label != "new" or force):
                parts.append(f"{len(names)} {label}")
        messages.success(request, "Tools refreshed: " + ", ".join(parts) + ".")
    else:
        messages.error(request, f"Tool discovery failed: {result.detail} The previous tool list is kept.")


@login_required
@require_POST
def server_discover(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk)
    services.require_manage(request.user, server)
    _discover_and_tell(request, server, force=True)
    return redirect("mcpsettings:server_detail", pk=server.pk)


@login_required
@require_safe
def server_list(request: HttpRequest) -> HttpResponse:
    servers = selectors.servers_for(request.user)
    trash_count = McpServer.objects.manageable_by(request.user).trashed().count()
    return render(request, "mcpsettings/server_list.html", {"servers": servers, "trash_count": trash_count})


@login_required
def server_new(request: HttpRequest) -> HttpResponse:
    form = McpServerForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        owner = data.pop("owner")
        oauth_data = {k: data.pop(k) for k in OAUTH_FIELDS}
        organization = None
        if owner not in (PERSONAL, GLOBAL):
            organization = Organization.objects.manageable_by(request.user).filter(slug=owner).first()
        try:
            server = services.server_create(
                actor=request.user,
                organization=organization,
                is_global=owner == GLOBAL,
                oauth=oauth_data,
                ip=client_ip(request),
                **data,
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        except Conflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Server “{server.name}” added.")
            _discover_and_tell(request, server)
            return redirect("mcpsettings:server_detail", pk=server.pk)
    return render(request, "mcpsettings/server_form.html", {"form": form, "server": None}, status=_status(form))


@login_required
@require_safe
def server_detail(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk)
    context_orgs = selectors.administered_orgs_seeing(request.user, server)
    existing = {
        c.organization_id: c.context
        for c in OrgServerContext.objects.filter(server=server, organization__in=context_orgs)
    }
    context_forms = [
        (org, OrgContextForm(initial={"org": org.slug, "context": existing.get(org.pk, "")}, prefix=f"ctx-{org.slug}"))
        for org in context_orgs
    ]
    views = hooks.tool_rows(request.user, server)
    items = hooks.item_rows(request.user, server)
    removed = McpTool.objects.filter(server=server, removed_at__isnull=False).order_by("name")
    return render(
        request,
        "mcpsettings/server_detail.html",
        {
            "server": server,
            "context_forms": context_forms,
            "views": views,
            "items": items,
            "removed": removed,
            "org_admin": server.organization_id is not None and server.can_manage,
        },
    )


@login_required
def server_edit(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk)
    services.require_manage(request.user, server)
    has_token = bool(server.credential and server.credential.is_set and server.credential.user_id is None)
    initial = {
        "name": server.name,
        "endpoint_url": server.endpoint_url,
        "description": server.description,
        "auth_type": server.auth_type,
        "header_name": server.header_name,
        "is_active": server.is_active,
        "new_tools_enabled": server.new_tools_enabled,
        "timeout_seconds": server.timeout_seconds,
        "transport": server.transport,
        "registration_mode": server.registration_mode,
        "oauth_issuer_url": server.oauth_issuer_url,
        "scopes": " ".join(server.scopes or []),
        "extra_auth_params": "\n".join(f"{k}={v}" for k, v in (server.extra_auth_params or {}).items()),
        "oauth_client_id": getattr(server.oauth_clients.filter(registration_mode="manual").first(), "client_id", ""),
    }
    form = McpServerForm(request.POST or None, user=request.user, editing=True, has_token=has_token, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            updated = services.server_update(actor=request.user, server=server, data=data, ip=client_ip(request))
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Server “{form.cleaned_data['name']}” saved.")
            _discover_and_tell(request, updated)
            return redirect("mcpsettings:server_detail", pk=server.pk)
    return render(request, "mcpsettings/server_form.html", {"form": form, "server": server}, status=_status(form))


@login_required
def server_delete(request: HttpRequest, pk) -> HttpResponse:
    """GET asks for confirmation; POST moves the server to the trash, or with `hard` deletes it for good."""
    hard = request.method == "POST" and "hard" in request.POST
    server = _server(request, pk, include_deleted=hard or request.GET.get("hard") == "1")
    services.require_manage(request.user, server)
    if request.method == "POST":
        if hard:
            services.server_hard_delete(actor=request.user, server=server, ip=client_ip(request))
            messages.success(request, f"Server “{server.name}” deleted for good.")
            return redirect("mcpsettings:server_trash")
        services.server_soft_delete(actor=request.user, server=server, ip=client_ip(request))
        messages.success(request, f"Server “{server.name}” moved to the trash. You can restore it from there.")
        return redirect("mcpsettings:server_list")
    return render(request, "mcpsettings/server_delete.html", {"server": server, "hard": request.GET.get("hard") == "1"})


@login_required
@require_safe
def server_trash(request: HttpRequest) -> HttpResponse:
    servers = selectors.servers_for(request.user, deleted=True)
    return render(request, "mcpsettings/server_trash.html", {"servers": servers})


@login_required
@require_POST
def server_restore(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk, include_deleted=True)
    try:
        services.server_restore(actor=request.user, server=server, ip=client_ip(request))
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect("mcpsettings:server_trash")
    messages.success(request, f"Server “{server.name}” restored.")
    return redirect("mcpsettings:server_detail", pk=server.pk)


@login_required
@require_POST
def server_context(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk)
    slug = request.POST.get("org", "")
    org = Organization.objects.manageable_by(request.user).filter(slug=slug).first()
    if org is None:
        raise Http404("No such organization.")
    context_text = request.POST.get(f"ctx-{slug}-context", "")
    try:
        services.org_context_set(
            actor=request.user, organization=org, server=server, context=context_text, ip=client_ip(request)
        )
    except NotVisible:
        raise Http404("This server is not available to that organization.") from None
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Context for {org.name} saved.")
    return redirect("mcpsettings:server_detail", pk=server.pk)


@login_required
def server_connect(request: HttpRequest, pk) -> HttpResponse:
    """GET: the connection state and a Connect button. POST: start OAuth sign-in at the provider."""
    server = _server(request, pk)
    own = None
    if server.auth_type == AuthType.OAUTH:
        own = Credential.objects.filter(server=server, user=request.user).first()
    error = None
    if request.method == "POST":
        if server.auth_type != AuthType.OAUTH:
            raise Http404("This server does not use OAuth.")
        step_up = (own.metadata or {}).get("insufficient_scope") if own else None
        try:
            url = oauth.begin(request, server, step_up=step_up)
        except oauth.OAuthError as exc:
            error = str(exc)
        else:
            return redirect(url)
    return render(
        request,
        "mcpsettings/server_connect.html",
        {"server": server, "own": own, "error": error, "redirect_uri": oauth.redirect_uri(request)},
        status=502 if error else 200,
    )


@login_required
@require_POST
def server_disconnect(request: HttpRequest, pk) -> HttpResponse:
    server = _server(request, pk)
    if oauth.disconnect(actor=request.user, server=server, ip=client_ip(request)):
        messages.success(request, f"Disconnected from “{server.name}”; its tokens are deleted.")
    return redirect("mcpsettings:server_detail", pk=server.pk)


@login_required
@require_safe
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where providers send the browser back (the redirect URI to register for manual clients)."""
    try:
        server, _ = oauth.complete(request, request.GET.dict())
    except oauth.OAuthError as exc:
        return render(request, "mcpsettings/oauth_error.html", {"error": str(exc), "code": exc.code}, status=400)
    messages.success(request, f"Connected to “{server.name}”.")
    _discover_and_tell(request, server, force=True)
    return redirect("mcpsettings:server_detail", pk=server.pk)


def oauth_client_metadata(request: HttpRequest) -> HttpResponse:
    """Gatehouse's OAuth Client ID Metadata Document (its URL is the client_id)."""
    try:
        doc = oauth.client_metadata_document(request)
    except oauth.OAuthError:
        raise Http404("GATEHOUSE_PUBLIC_URL is not set.") from None
    return JsonResponse(doc)


# --- gateways ---------------------------------------------------------------------------------


def _gateway(request: HttpRequest, pk, *, include_deleted: bool = False) -> Gateway:
    try:
        return selectors.gateway_for(request.user, pk, include_deleted=include_deleted)
    except Gateway.DoesNotExist:
        raise Http404("No such gateway.") from None


@login_required
def gateway_list(request: HttpRequest) -> HttpResponse:
    form = GatewayForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            gateway = services.gateway_create(actor=request.user, name=form.cleaned_data["name"], ip=client_ip(request))
        except ValidationError as exc:
            apply_errors(form, exc)
        except Conflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Gateway “{gateway.name}” created. Add the servers it should offer.")
            return redirect("mcpsettings:gateway_detail", pk=gateway.pk)
    context = {
        "form": form,
        "gateways": selectors.gateways_for(request.user),
        "trashed": selectors.gateways_for(request.user, deleted=True),
    }
    return render(request, "mcpsettings/gateway_list.html", context, status=_status(form))


@login_required
def gateway_detail(request: HttpRequest, pk) -> HttpResponse:
    gateway = _gateway(request, pk)
    if request.method == "POST":
        form = GatewaySourceForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a server.")
        else:
            server_id = form.cleaned_data["server_id"]
            try:
                if "remove" in request.POST:
                    services.gateway_remove_source(
                        actor=request.user, gateway=gateway, server_id=server_id, ip=client_ip(request)
                    )
                    messages.success(request, "Source removed.")
                else:
                    services.gateway_add_source(
                        actor=request.user, gateway=gateway, server_id=server_id, ip=client_ip(request)
                    )
                    messages.success(request, "Source added.")
            except (ValidationError, NotVisible):
                raise Http404("No such server.") from None
        return redirect("mcpsettings:gateway_detail", pk=gateway.pk)
    sources = list(gateway.sources.all())
    available = [s for s in selectors.servers_for(request.user) if s.pk not in {x.pk for x in sources}]
    url = gateway_endpoint_url(request, gateway)
    context = {
        "gateway": gateway,
        "sources": sources,
        "available": available,
        "endpoint_url": url,
        "snippets": client_snippets(f"gatehouse-{gateway.slug}", url),
        "all_tools_url": gateway_endpoint_url(request),
    }
    return render(request, "mcpsettings/gateway_detail.html", context)


@login_required
@require_POST
def gateway_delete(request: HttpRequest, pk) -> HttpResponse:
    hard = "hard" in request.POST
    gateway = _gateway(request, pk, include_deleted=hard)
    if hard:
        services.gateway_hard_delete(actor=request.user, gateway=gateway, ip=client_ip(request))
        messages.success(request, f"Gateway “{gateway.name}” deleted for good; its endpoint is free again.")
    else:
        services.gateway_soft_delete(actor=request.user, gateway=gateway, ip=client_ip(request))
        messages.success(request, f"Gateway “{gateway.name}” moved to the trash.")
    return redirect("mcpsettings:gateway_list")


@login_required
@require_POST
def gateway_restore(request: HttpRequest, pk) -> HttpResponse:
    gateway = _gateway(request, pk, include_deleted=True)
    try:
        services.gateway_restore(actor=request.user, gateway=gateway, ip=client_ip(request))
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect("mcpsettings:gateway_list")
    messages.success(request, f"Gateway “{gateway.name}” restored.")
    return redirect("mcpsettings:gateway_detail", pk=gateway.pk)


def gateway_endpoint_url(request: HttpRequest, gateway: Gateway | None = None) -> str:
    """A gateway's advertised endpoint (a pool URL, or this site's /mcp/<slug>); no gateway: /mcp itself."""
    if gateway is not None and not gateway.endpoint.startswith("/"):
        return gateway.endpoint
    return public_url(request, reverse("mcp_gateway", args=[gateway.slug]) if gateway else reverse("mcp"))
