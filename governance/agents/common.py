"""What the entry points share: the approval link and the facts of the request a call is logged with."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from accounts.ratelimit import client_ip
from accounts.web import public_url


def approve_url(request: HttpRequest, approval_id) -> str:
    """Where the person opens the request (absolute: the agent passes it on)."""
    return public_url(request, f"{reverse('governance:approvals')}#approval-{approval_id}")


def request_facts(request: HttpRequest) -> dict:
    return {"ip": client_ip(request), "user_agent": request.META.get("HTTP_USER_AGENT", "")}
