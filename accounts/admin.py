from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.contrib.auth.forms import UserCreationForm as DjangoUserCreationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts import services
from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, User
from accounts.ratelimit import client_ip


def is_org_admin(request) -> bool:
    """Staff users who own or administer at least one org get the org-scoped admin."""
    cached = getattr(request, "_gatehouse_org_admin", None)
    if cached is None:
        user = request.user
        cached = bool(user.is_active and user.is_staff and Organization.objects.manageable_by(user).exists())
        request._gatehouse_org_admin = cached
    return cached


class TenantAdmin(admin.ModelAdmin):
    """Superusers see everything; org admins see only what `manageable_by(user)` returns.

    Objects outside that queryset answer 404, never a redirect that confirms they exist.
    Org admins need no Django model permissions: their role in the org is the permission.
    """

    org_admin_can_add = False
    org_admin_can_change = True
    org_admin_can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).manageable_by(request.user)

    def get_list_filter(self, request):
        # A plain related filter lists every row of the related table; offer only the related
        # objects present in this admin's (tenant-filtered) queryset.
        filters = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and "__" not in entry and self.model._meta.get_field(entry).is_relation:
                entry = (entry, admin.RelatedOnlyFieldListFilter)
            filters.append(entry)
        return filters

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} matches the given query.")
        return obj

    def _allowed(self, request, flag: bool) -> bool:
        return request.user.is_superuser or (flag and is_org_admin(request))

    def has_module_permission(self, request) -> bool:
        return self._allowed(request, True)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._allowed(request, True)

    def has_add_permission(self, request) -> bool:
        return self._allowed(request, self.org_admin_can_add)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._allowed(request, self.org_admin_can_change)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._allowed(request, self.org_admin_can_delete)


class UserCreationForm(DjangoUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "username")


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(TenantAdmin, DjangoUserAdmin):
    """Org admins see their members read-only; only superusers edit accounts."""

    org_admin_can_change = False
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("email", "username", "is_guest", "is_staff", "is_active", "date_joined")
    list_filter = ("is_guest", "is_staff", "is_superuser", "is_active")
    search_fields = ("email", "username")
    ordering = ("email",)
    readonly_fields = ("id", "date_joined", "updated_at", "last_login")
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        ("Profile", {"fields": ("username", "settings")}),
        ("Guest", {"fields": ("is_guest", "guest_expires_at")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "username", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("user", "role", "created_at")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(TenantAdmin):
    list_display = ("name", "slug", "plan_id", "contact_email", "created_at")
    list_filter = ("plan_id",)
    search_fields = ("name", "slug", "contact_email")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("id", "name", "slug", "plan_id", "contact_email", "settings", "billing_info", "created_at", "updated_at")
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        # Plan and billing belong to the operator, not the org's own admins.
        extra = () if request.user.is_superuser else ("slug", "plan_id", "billing_info")
        return (*self.readonly_fields, *extra)


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("organization", "user", "role")

    def clean(self):
        data = super().clean()
        existing = None if self.instance._state.adding else Membership.objects.get(pk=self.instance.pk)
        # On change, organization and user are read-only and absent from cleaned_data.
        org = data.get("organization") or (existing.organization if existing else None)
        user = data.get("user") or (existing.user if existing else None)
        role = data.get("role")
        if org is None or user is None or role is None:
            return data
        try:
            services.membership_validate(
                actor=self.request.user, organization=org, role=role, membership=existing, user=user
            )
        except (PermissionDenied, Organization.DoesNotExist) as exc:
            raise ValidationError(str(exc) or "You cannot manage this organization.") from None
        return data


@admin.register(Membership)
class MembershipAdmin(TenantAdmin):
    """Org admins change roles and remove members; adding someone takes their consent (an invitation).

    Only superusers add memberships directly, like the operator's `create_user --org`.
    """

    form = MembershipAdminForm
    org_admin_can_add = False
    org_admin_can_delete = True
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "organization")
    search_fields = ("user__email", "user__username", "organization__name")
    list_select_related = ("user", "organization")
    raw_id_fields = ("user",)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.request = request
        return form

    def get_readonly_fields(self, request, obj=None):
        return ("organization", "user") if obj else ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.manageable_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        # Through the services, so the audit trail is written in the same transaction.
        if change:
            services.membership_change_role(actor=request.user, membership=obj, role=obj.role, ip=client_ip(request))
        else:
            created = services.membership_add(
                actor=request.user, organization=obj.organization, user=obj.user, role=obj.role, ip=client_ip(request)
            )
            obj.pk = created.pk

    def delete_model(self, request, obj):
        services.membership_remove(actor=request.user, membership=obj, ip=client_ip(request))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            try:
                services.membership_remove(actor=request.user, membership=obj, ip=client_ip(request))
            except (ValidationError, PermissionDenied) as exc:
                messages.error(request, f"{obj}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")


@admin.register(ApiKey)
class ApiKeyAdmin(TenantAdmin):
    """Read-only; the digest is never shown. Keys are created by their owners, revoked here or there."""

    org_admin_can_change = False
    list_display = (
        "name",
        "prefix",
        "user",
        "scopes",
        "audience",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", ("oauth_application", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "user__email")
    list_select_related = ("user",)
    fields = (
        "id",
        "user",
        "name",
        "prefix",
        "scopes",
        "oauth_application",
        "audience",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Needed for the revoke action; every field stays read-only.
        return request.user.is_superuser

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(actor=request.user, api_key=key, ip=client_ip(request))
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Invitation)
class InvitationAdmin(TenantAdmin):
    """Read-only, with a revoke action; invitations are made on the org page, where the link is shown once.

    The token digest is never shown.
    """

    list_display = ("email", "organization", "role", "invited_by", "created_at", "expires_at", "state")
    list_filter = ("role", "organization")
    search_fields = ("email", "organization__name")
    list_select_related = ("organization", "invited_by")
    fields = (
        "id",
        "organization",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "declined_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the row is the record of who was invited, by whom

    @admin.action(description="Revoke selected invitations")
    def revoke(self, request, queryset):
        done = 0
        for invitation in queryset:
            if not invitation.is_open:
                continue
            try:
                services.invitation_revoke(actor=request.user, invitation=invitation, ip=client_ip(request))
                done += 1
            except (ValidationError, PermissionDenied, Organization.DoesNotExist) as exc:
                messages.error(request, f"{invitation}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
        messages.success(request, f"Revoked {done} invitation(s).")


@admin.register(AuditEvent)
class AuditEventAdmin(TenantAdmin):
    """Append-only: nobody adds, changes or deletes audit events, not even superusers."""

    list_display = ("created_at", "action", "target_type", "target_repr", "actor", "organization", "ip")
    list_filter = ("action", "target_type", "organization")
    search_fields = ("action", "target_repr", "target_id", "actor__email")
    list_select_related = ("actor", "organization")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "created_at",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "actor",
        "organization",
        "changes",
        "ip",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# simplejwt's list of issued refresh tokens is bookkeeping for its blacklist (the tokens are not stored:
# accounts.jwt_tokens); script sessions are revoked as keys, above.
admin.site.unregister(OutstandingToken)
