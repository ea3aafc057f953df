from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import zip_longest

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization
from accounts.ratelimit import client_ip
from governance import approval_arguments, selectors, services
from governance.models import (
    ApprovalRequest,
    ApprovalStatus,
    RequestLog,
    UsageDaily,
    histogram_median,
)
from mcpsettings.models import McpItem, McpServer, McpTool
from mcpsettings.selectors import servers_for

DECISIONS = [
    ("once", "Allow once", None),
    ("always_1h", "Allow for 1 hour", "1h"),
    ("always", "Always allow", None),
    ("never", "Never allow", None),
    ("deny", "Deny", None),
]


def _show_arguments(items: list[ApprovalRequest], *, reveal: bool = False) -> None:
    """Attach what each card shows of its arguments (full, masked unless revealed); one secrets query per server."""
    secrets: dict = {}
    for item in items:
        if item.server_id not in secrets:
            secrets[item.server_id] = approval_arguments.server_secrets(item)
        item.shown = approval_arguments.shown(item, reveal=reveal, secrets=secrets[item.server_id])


@never_cache  # the full arguments are on the page: no browser or proxy keeps a copy
@login_required
@require_safe
def approvals(request: HttpRequest) -> HttpResponse:
    qs = ApprovalRequest.objects.visible_to(request.user).select_related("server", "decided_by")
    pending = list(qs.in_status(ApprovalStatus.PENDING).order_by("created_at"))
    history = list(qs.exclude(pk__in=[p.pk for p in pending]).defer("arguments_full")[:100])
    annotations = selectors.tool_annotations(pending + history)
    for item in pending + history:
        item.annotations = annotations.get((item.server_id, item.tool_name), {})
    _show_arguments(pending)
    return render(
        request, "governance/approvals.html", {"pending": pending, "history": history, "decisions": DECISIONS}
    )


@never_cache
@login_required
@require_safe
def approval_detail(request: HttpRequest, pk) -> HttpResponse:
    """One request; `?reveal=1` shows the values under secret-looking keys, to its owner only."""
    item = ApprovalRequest.objects.visible_to(request.user).select_related("server", "decided_by").filter(pk=pk).first()
    if item is None:
        raise Http404("No such request.")
    item.annotations = selectors.tool_annotations([item]).get((item.server_id, item.tool_name), {})
    _show_arguments([item], reveal=request.GET.get("reveal", "").lower() in ("1", "true", "yes"))
    return render(request, "governance/approval_detail.html", {"item": item, "decisions": DECISIONS})


@login_required
@require_POST
def approval_decide(request: HttpRequest, pk) -> HttpResponse:
    item = ApprovalRequest.objects.visible_to(request.user).filter(pk=pk).first()
    if item is None:
        raise Http404("No such request.")
    choice = request.POST.get("decision", "")
    match = next((d for d in DECISIONS if d[0] == choice), None)
    if match is None:
        messages.error(request, "Choose a decision.")
        return redirect("governance:approvals")
    decision = "always" if choice.startswith("always") else choice
    try:
        services.approval_decide(
            actor=request.user,
            approval_request=item,
            decision=decision,
            expires_in=match[2],
            # The digest of the arguments the page showed: deciding on anything else is refused.
            arguments_digest=request.POST.get("arguments_digest") or None,
            ip=client_ip(request),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{match[1]}: {item.tool_name} on {item.server.name}.")
    return redirect("governance:approvals")


@login_required
@require_POST
def tool_settings(request: HttpRequest, pk, tool: str) -> HttpResponse:
    """The enable switch and approval selector of one tool on the server page."""
    server = McpServer.objects.visible_to(request.user).live().filter(pk=pk).first()
    if server is None or not McpTool.objects.filter(server=server, name=tool).exists():
        raise Http404("No such tool.")
    approval = request.POST.get("approval") or None
    expires_in = None
    if approval == "always_1h":
        approval, expires_in = "always", "1h"
    enabled = request.POST.get("is_enabled")
    try:
        services.tool_settings_update(
            actor=request.user,
            server=server,
            tool_name=tool,
            is_enabled=None if enabled is None else enabled in ("1", "true", "on"),
            approval=approval,
            expires_in=expires_in,
            layer=request.POST.get("layer") or None,
            ip=client_ip(request),
        )
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"Saved {tool}.")
    return redirect("mcpsettings:server_detail", pk=server.pk)


@login_required
@require_POST
def item_settings(request: HttpRequest, pk, item_id: int) -> HttpResponse:
    """The enable switch of one resource, resource template or prompt on the server page."""
    server = McpServer.objects.visible_to(request.user).live().filter(pk=pk).first()
    item = McpItem.objects.present().filter(server=server, pk=item_id).first() if server else None
    if item is None:
        raise Http404("No such resource or prompt.")
    item.server = server
    try:
        services.item_settings_update(
            actor=request.user,
            item=item,
            is_enabled=request.POST.get("is_enabled") in ("1", "true", "on"),
            layer=request.POST.get("layer") or None,
            ip=client_ip(request),
        )
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Saved {item.key[:80]}.")
    return redirect("mcpsettings:server_detail", pk=server.pk)


def daily_series(user, days: int = 14) -> list[dict]:
    """Per day: requests, failures and median latency — all from the usage rows (no scan of the logs)."""
    today = timezone.localdate()
    start = today - timedelta(days=days - 1)
    per_day = {start + timedelta(days=i): {"requests": 0, "failed": 0, "hist": []} for i in range(days)}
    for row in UsageDaily.objects.filter(user=user, date__gte=start).only(
        "date", "request_count", "failed", "latency_histogram"
    ):
        day = per_day[row.date]
        day["requests"] += row.request_count
        day["failed"] += row.failed
        hist = row.latency_histogram or []
        day["hist"] = [a + b for a, b in zip_longest(day["hist"], hist, fillvalue=0)]
    return [
        {"date": d, "requests": v["requests"], "failed": v["failed"], "median": histogram_median(v["hist"])}
        for d, v in sorted(per_day.items())
    ]


def chart(series: list[dict], width: int = 700, height: int = 180) -> dict:
    """Coordinates for the inline SVG chart (bars: requests and failures; line: median latency)."""
    pad = 30
    n = max(len(series), 1)
    top = max([s["requests"] for s in series] + [1])
    top_ms = max([s["median"] for s in series] + [1])
    slot = (width - 2 * pad) / n
    bars, points = [], []
    for i, s in enumerate(series):
        x = pad + i * slot
        h = (height - 2 * pad) * s["requests"] / top
        fh = (height - 2 * pad) * s["failed"] / top
        bars.append(
            {
                "x": round(x + slot * 0.15, 1),
                "w": round(slot * 0.7, 1),
                "y": round(height - pad - h, 1),
                "h": round(h, 1),
                "fy": round(height - pad - fh, 1),
                "fh": round(fh, 1),
                **s,
                "label": s["date"].strftime("%d %b"),
            }
        )
        points.append(f"{x + slot / 2:.1f},{height - pad - (height - 2 * pad) * s['median'] / top_ms:.1f}")
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "line": " ".join(points),
        "top": top,
        "top_ms": top_ms,
        "base": height - pad,
    }


PAGE_SIZE = 50


@login_required
@require_safe
def activity(request: HttpRequest) -> HttpResponse:
    servers = McpServer.objects.visible_to(request.user).only("id", "name").order_by("name")
    server_filter = request.GET.get("server", "")
    status_filter = request.GET.get("status", "")
    try:
        qs = selectors.request_logs_for(request.user, server=server_filter, status=status_filter)
    except ValidationError:
        qs = RequestLog.objects.none()
    # Keyset pagination (older than an id): no COUNT(*) over millions of rows on every visit.
    before = request.GET.get("before", "")
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    rows = list(
        qs.order_by("-id").only(
            "id",
            "created_at",
            "server_name",
            "tool_name",
            "status",
            "status_code",
            "duration_ms",
            "error_message",
            "via",
        )[: PAGE_SIZE + 1]
    )
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    series = daily_series(request.user)
    context = {
        "rows": rows[:PAGE_SIZE],
        "older": older,
        "paged": bool(before),
        "servers": servers,
        "server_filter": server_filter,
        "status_filter": status_filter,
        "statuses": selectors.LOG_STATUSES,
        "series": series,
        "chart": chart(series),
        "today": series[-1] if series else {"requests": 0, "failed": 0},
    }
    return render(request, "governance/activity.html", context)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


@login_required
@require_safe
def audit(request: HttpRequest) -> HttpResponse:
    """Org admins see their orgs' audit trail; superusers see everything."""
    if not (request.user.is_superuser or Organization.objects.manageable_by(request.user).exists()):
        raise PermissionDenied("The audit log is for organization owners and admins.")
    qs = AuditEvent.objects.visible_to(request.user).select_related("actor", "organization")
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "governance/audit.html", {"page": page})


@login_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    """The dashboard: servers and their state, what waits for approval, today's calls."""
    memberships = Membership.objects.filter(user=request.user).select_related("organization")
    keys = ApiKey.objects.keys().visible_to(request.user).live().count()
    pending = list(
        ApprovalRequest.objects.visible_to(request.user)
        .filter(status=ApprovalStatus.PENDING, expires_at__gt=timezone.now())
        .select_related("server")
        .order_by("created_at")[:5]
    )
    today = UsageDaily.objects.filter(user=request.user, date=timezone.localdate()).aggregate(
        calls=Sum("request_count"), failed=Sum("failed")
    )
    invitations = Invitation.objects.visible_to(request.user).open().select_related("organization", "invited_by")
    context = {
        "memberships": memberships,
        "invitations": invitations,
        "live_keys": keys,
        "servers": servers_for(request.user),
        "pending": pending,
        "today_calls": today["calls"] or 0,
        "today_failed": today["failed"] or 0,
    }
    return render(request, "governance/dashboard.html", context)
