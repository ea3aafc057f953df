from __future__ import annotations

from datetime import timedelta

from allauth.account.internal.flows.login import perform_password_login
from allauth.account.models import Login
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.log import log_response
from django.views.decorators.http import require_POST, require_safe

from accounts import hooks, oauth_tokens, services
from accounts.forms import (
    ApiKeyForm,
    ClaimForm,
    InvitationForm,
    LoginForm,
    MemberRoleForm,
    OrganizationForm,
    SignupForm,
)
from accounts.models import ApiKey, Invitation, Membership, Organization
from accounts.ratelimit import client_ip
from accounts.web import public_url

BACKEND = "django.contrib.auth.backends.ModelBackend"


def apply_errors(form, exc: ValidationError) -> None:
    """Put a service's ValidationError next to the form's fields (or on top when it has no field)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            for err in errors:
                form.add_error(field if field in form.fields else None, err)
    else:
        for message in exc.messages:
            form.add_error(None, message)


@login_required
@require_safe
def org_list(request: HttpRequest) -> HttpResponse:
    memberships = Membership.objects.filter(user=request.user).select_related("organization")
    return render(request, "accounts/org_list.html", {"memberships": memberships})


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and not request.user.is_guest:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(**form.cleaned_data, ip=client_ip(request))
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            login(request, user, backend=BACKEND)
            messages.success(request, "Welcome to Gatehouse. Your account is ready.")
            return redirect("home")
    return render(request, "accounts/signup.html", {"form": form}, status=400 if form.errors else 200)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        return self.render_to_response(self.get_context_data(form=form), status=400)

    def form_valid(self, form):
        # allauth's log-in flow, so a second factor is asked for when the account has one (allauth.mfa).
        user = form.get_user()
        login_ = Login(user=user, email_verification="none", redirect_url=self.get_success_url(), email=user.email)
        return perform_password_login(self.request, {"email": user.email}, login_)


@require_POST
def guest(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    user = services.guest_start(ip=client_ip(request))
    login(request, user, backend=BACKEND)
    messages.info(
        request,
        "You are using Gatehouse as a guest. Claim your account to keep your work after the session ends.",
    )
    return redirect("home")


@login_required
def claim(request: HttpRequest) -> HttpResponse:
    if not request.user.is_guest:
        messages.info(request, "Your account is already registered.")
        return redirect("home")
    form = ClaimForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.guest_claim(user=request.user, **form.cleaned_data, ip=client_ip(request))
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            update_session_auth_hash(request, user)
            messages.success(request, "Your account is registered. Everything you made as a guest is still here.")
            return redirect("home")
    return render(request, "accounts/claim.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def password_change(request: HttpRequest) -> HttpResponse:
    if request.user.is_guest:
        messages.info(request, "Guests have no password. Claim your account to set one.")
        return redirect("accounts:claim")
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.user_set_password(
            user=request.user, password=form.cleaned_data["new_password1"], ip=client_ip(request)
        )
        update_session_auth_hash(request, request.user)
        messages.success(request, "Your password has been changed.")
        return redirect("home")
    return render(request, "accounts/password_change.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        try:
            key, new_key = services.api_key_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
                ip=client_ip(request),
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"API key “{key.name}” created. Copy it now: it will not be shown again.")
            form = ApiKeyForm()
    keys = ApiKey.objects.keys().visible_to(request.user)
    status = 400 if form.errors else 200
    # The raw key is rendered once in this response and never stored.
    response = render(
        request, "accounts/api_keys.html", {"form": form, "keys": keys, "new_key": new_key}, status=status
    )
    if new_key:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.keys().visible_to(request.user), pk=key_id)
    services.api_key_revoke(actor=request.user, api_key=key, ip=client_ip(request))
    messages.success(request, f"API key “{key.name}” revoked.")
    return redirect("accounts:api_keys")


@login_required
def connected_apps(request: HttpRequest) -> HttpResponse:
    """MCP clients the person connected with OAuth (accounts.oauth_tokens), with what each may reach."""
    connections = ApiKey.objects.connections().visible_to(request.user).select_related("oauth_application")
    return render(request, "accounts/connected_apps.html", {"connections": connections})


@login_required
@require_POST
def connected_app_disconnect(request: HttpRequest, key_id) -> HttpResponse:
    connection = get_object_or_404(ApiKey.objects.connections().visible_to(request.user), pk=key_id)
    oauth_tokens.disconnect(actor=request.user, connection=connection, ip=client_ip(request))
    messages.success(request, f"“{connection.name}” is disconnected; its tokens no longer work.")
    return redirect("accounts:connected_apps")


@login_required
def org_new(request: HttpRequest) -> HttpResponse:
    if request.user.is_guest:
        messages.info(request, "Claim your account before creating an organization.")
        return redirect("accounts:claim")
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.organization_create(actor=request.user, **form.cleaned_data, ip=client_ip(request))
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Organization “{org.name}” created. You are its owner.")
            return redirect("accounts:org_detail", slug=org.slug)
    return render(request, "accounts/org_new.html", {"form": form}, status=400 if form.errors else 200)


def _org_for(request: HttpRequest, slug: str) -> tuple[Organization, Membership | None]:
    org = get_object_or_404(Organization.objects.visible_to(request.user), slug=slug)
    mine = Membership.objects.filter(user=request.user, organization=org).first()
    return org, mine


def _invitation_link(request: HttpRequest, raw_token: str) -> str:
    return public_url(request, reverse("accounts:invitation", kwargs={"token": raw_token}))


@login_required
def org_detail(request: HttpRequest, slug: str) -> HttpResponse:
    org, mine = _org_for(request, slug)
    can_manage = request.user.is_superuser or bool(mine and mine.is_admin)
    invite_form = InvitationForm(request.POST or None) if can_manage else None
    created = None
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only the organization's owners and admins can invite members.")
        if invite_form.is_valid():
            try:
                invitation, raw = services.invitation_create(
                    actor=request.user,
                    organization=org,
                    email=invite_form.cleaned_data["email"],
                    role=invite_form.cleaned_data["role"],
                    ip=client_ip(request),
                )
            except (ValidationError, PermissionDenied) as exc:
                apply_errors(invite_form, exc if isinstance(exc, ValidationError) else ValidationError(str(exc)))
            except Organization.DoesNotExist:
                raise Http404 from None
            else:
                # The same answer whether or not the email has an account. The link is shown
                # in this response only (never via messages, which live in the session).
                created = {"invitation": invitation, "link": _invitation_link(request, raw)}
                invite_form = InvitationForm()
    members = org.memberships.select_related("user").order_by("user__email")
    servers = hooks.org_servers(org)
    invitations = (
        Invitation.objects.manageable_by(request.user)
        .filter(organization=org)
        .open()
        .select_related("invited_by")
        .order_by("email")
        if can_manage
        else []
    )
    context = {
        "servers": servers,
        "org": org,
        "mine": mine,
        "members": members,
        "can_manage": can_manage,
        "invite_form": invite_form,
        "invitations": invitations,
        "created": created,
        "role_choices": MemberRoleForm.base_fields["role"].choices,
    }
    response = render(
        request, "accounts/org_detail.html", context, status=400 if invite_form and invite_form.errors else 200
    )
    if created:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def org_leave(request: HttpRequest, slug: str) -> HttpResponse:
    org, _mine = _org_for(request, slug)
    try:
        services.membership_leave(actor=request.user, organization=org, ip=client_ip(request))
    except Organization.DoesNotExist:
        raise Http404 from None  # a superuser who is not a member has nothing to leave
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("accounts:org_detail", slug=org.slug)
    messages.success(request, f"You left {org.name}.")
    return redirect("home")


@login_required
@require_POST
def org_invitation_revoke(request: HttpRequest, slug: str, invitation_id) -> HttpResponse:
    org, mine = _org_for(request, slug)
    if not (request.user.is_superuser or (mine and mine.is_admin)):
        raise PermissionDenied("Only the organization's owners and admins can revoke invitations.")
    invitations = Invitation.objects.manageable_by(request.user).filter(organization=org)
    invitation = get_object_or_404(invitations, pk=invitation_id)
    try:
        services.invitation_revoke(actor=request.user, invitation=invitation, ip=client_ip(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("accounts:org_detail", slug=org.slug)


def _answer_invitation(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    """POST with `accept` or `decline`: the invitee's answer, then where it leads."""
    accept = "accept" in request.POST
    if not accept and "decline" not in request.POST:
        messages.error(request, "Choose Accept or Decline.")
        return redirect("home")
    try:
        if accept:
            services.invitation_accept(actor=request.user, invitation=invitation, ip=client_ip(request))
        else:
            services.invitation_decline(actor=request.user, invitation=invitation, ip=client_ip(request))
    except Invitation.DoesNotExist:
        raise Http404 from None
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("home")
    org = invitation.organization
    if accept:
        messages.success(request, f"You joined {org.name} as {invitation.get_role_display().lower()}.")
        return redirect("accounts:org_detail", slug=org.slug)
    messages.info(request, f"You declined the invitation to {org.name}.")
    return redirect("home")


_LINK_FOR_LOGS = "/invitations/<token>/"


def _link_response(request: HttpRequest, response: HttpResponse, reason: str) -> HttpResponse:
    """Log a 4xx answer on the link ourselves, without the token: Django's own log line has the path."""
    log_response("%s: %s", reason, _LINK_FOR_LOGS, response=response, request=request)
    return response


@login_required
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The link an inviter shares: names the org, the inviter and the role; Accept / Decline.

    Unknown tokens and other people's invitations get the same 404, which names nothing.
    """
    if request.method not in ("GET", "HEAD", "POST"):
        response = HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        return _link_response(request, response, f"Method Not Allowed ({request.method})")
    if request.user.is_guest:
        # Guests have no email to match; they learn nothing about the invitation either.
        response = render(request, "accounts/invitation_refused.html", {"guest": True}, status=403)
        return _link_response(request, response, "Forbidden")
    found = services.invitation_for_token(token)
    if found is None or found.email != (request.user.email or "").lower():
        response = render(request, "accounts/invitation_refused.html", status=404)
        return _link_response(request, response, "Not Found")
    if request.method == "POST":
        return _answer_invitation(request, found)
    response = render(request, "accounts/invitation.html", {"invitation": found})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def invitation_respond(request: HttpRequest, invitation_id) -> HttpResponse:
    """Accept or decline from the dashboard: only invitations addressed to the signed-in user exist here."""
    mine = Invitation.objects.visible_to(request.user).select_related("organization")
    found = get_object_or_404(mine, pk=invitation_id)
    return _answer_invitation(request, found)


@login_required
@require_POST
def org_member(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    """Change a member's role (`role` field) or remove them (`remove` button)."""
    org, mine = _org_for(request, slug)
    if not (request.user.is_superuser or (mine and mine.is_admin)):
        raise PermissionDenied("Only the organization's owners and admins can change its members.")
    membership = get_object_or_404(Membership.objects.filter(organization=org), pk=membership_id)
    try:
        if "remove" in request.POST:
            services.membership_remove(actor=request.user, membership=membership, ip=client_ip(request))
            messages.success(request, f"{membership.user} removed from {org.name}.")
        else:
            form = MemberRoleForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Choose a valid role.")
            else:
                services.membership_change_role(
                    actor=request.user, membership=membership, role=form.cleaned_data["role"], ip=client_ip(request)
                )
                messages.success(request, f"{membership.user} is now {form.cleaned_data['role']}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except Organization.DoesNotExist:
        raise Http404 from None
    if "remove" in request.POST and membership.user_id == request.user.pk:
        return redirect("home")
    return redirect(reverse("accounts:org_detail", kwargs={"slug": org.slug}))
