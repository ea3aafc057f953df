from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from accounts.admin import TenantAdmin
from accounts.models import Organization
from accounts.ratelimit import client_ip
from mcpsettings import services
from mcpsettings.models import AuthType, Credential, Gateway, McpServer, McpTool, OAuthClient, OrgServerContext


class McpServerAdminForm(forms.ModelForm):
    """Secrets are write-only here: the token field is never filled in, and empty means "keep"."""

    endpoint_url = forms.CharField(max_length=2048, help_text="http(s) URL of the Streamable HTTP endpoint.")
    oauth_issuer_url = forms.CharField(max_length=2048, required=False)
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Bearer token or header value. Write-only: leave empty to keep the stored one.",
    )

    class Meta:
        model = McpServer
        fields = (
            "name",
            "organization",
            "orgs",
            "endpoint_url",
            "description",
            "auth_type",
            "header_name",
            "is_active",
            "new_tools_enabled",
            "oauth_issuer_url",
            "registration_mode",
            "scopes",
            "extra_auth_params",
        )

    def clean(self):
        data = super().clean()
        # The same rules as the service, so the admin shows them next to the fields.
        try:
            if "name" in data:
                data["name"] = services.clean_name(data["name"])
            if "endpoint_url" in data:
                data["endpoint_url"] = services.clean_endpoint_url(data["endpoint_url"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field, errors)
        if self.instance._state.adding and not self.request.user.is_superuser and not data.get("organization"):
            self.add_error("organization", "Choose the organization that owns this server.")
        probe = McpServer(
            pk=None if self.instance._state.adding else self.instance.pk,
            organization=data.get("organization"),
            owner=None if self.instance._state.adding else self.instance.owner,
        )
        if data.get("name") and services.name_taken(probe, data["name"]):
            self.add_error("name", "A server with this name already exists here.")
        auth = data.get("auth_type")
        if auth in (AuthType.BEARER, AuthType.HEADER) and not data.get("token"):
            has = (
                not self.instance._state.adding
                and self.instance.auth_type == auth
                and Credential.objects.filter(server=self.instance, user__isnull=True).exists()
            )
            if not has:
                self.add_error("token", "Enter the token this server expects.")
        return data


@admin.register(McpServer)
class McpServerAdmin(TenantAdmin):
    form = McpServerAdminForm
    org_admin_can_add = True
    org_admin_can_delete = True
    list_display = ("name", "kind", "organization", "owner", "status", "is_active", "auth_type", "deleted_at")
    list_filter = ("status", "is_active", "auth_type", "organization")
    search_fields = ("name", "endpoint_url", "owner__email", "organization__name")
    list_select_related = ("organization", "owner")
    readonly_fields = (
        "id",
        "owner",
        "status",
        "status_detail",
        "protocol_version",
        "server_info",
        "instructions",
        "manifest_fetched_at",
        "created_at",
        "updated_at",
        "deleted_at",
    )

    def get_fields(self, request, obj=None):
        fields = [*list(McpServerAdminForm.Meta.fields), "token"]
        if obj is not None:
            fields.remove("organization")
        if not request.user.is_superuser:
            fields.remove("orgs")
        return fields + list(self.readonly_fields)

    def get_form(self, request, obj=None, **kwargs):
        kwargs["fields"] = [f for f in self.get_fields(request, obj) if f not in self.readonly_fields]
        form = super().get_form(request, obj, **kwargs)
        form.request = request
        return form

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.manageable_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        data = dict(form.cleaned_data)
        if change:
            data.pop("organization", None)
            orgs = data.pop("orgs", None)
            updated = services.server_update(actor=request.user, server=obj, data=data, ip=client_ip(request))
            if orgs is not None:
                updated.orgs.set(orgs)
        else:
            created = services.server_create(
                actor=request.user,
                name=data["name"],
                endpoint_url=data["endpoint_url"],
                auth_type=data["auth_type"],
                token=data.get("token"),
                header_name=data.get("header_name", ""),
                organization=data.get("organization"),
                orgs=data.get("orgs") or [],
                is_global=request.user.is_superuser and not data.get("organization"),
                description=data.get("description", ""),
                is_active=data.get("is_active", True),
                new_tools_enabled=data.get("new_tools_enabled", True),
                ip=client_ip(request),
            )
            obj.pk = created.pk
            obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        # Done by the service (orgs), nothing else is related.
        return None

    def delete_model(self, request, obj):
        services.server_hard_delete(actor=request.user, server=obj, ip=client_ip(request))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            services.server_hard_delete(actor=request.user, server=obj, ip=client_ip(request))


@admin.register(Credential)
class CredentialAdmin(TenantAdmin):
    """Metadata only. Token values are never shown, not even masked."""

    org_admin_can_change = False
    list_display = ("server", "user", "organization", "token_status", "expires_at", "updated_at")
    list_filter = ("token_status",)
    search_fields = ("server__name", "user__email")
    list_select_related = ("server", "user", "organization")
    fields = (
        "id",
        "server",
        "user",
        "organization",
        "token_type",
        "token_status",
        "expires_at",
        "scopes",
        "last_used_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OAuthClient)
class OAuthClientAdmin(TenantAdmin):
    org_admin_can_change = False
    list_display = ("server", "issuer", "registration_mode", "created_at")
    search_fields = ("server__name", "issuer", "client_id")
    fields = ("id", "server", "issuer", "registration_mode", "client_id", "created_at", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False


class OrgServerContextForm(forms.ModelForm):
    class Meta:
        model = OrgServerContext
        fields = ("organization", "server", "context")


@admin.register(OrgServerContext)
class OrgServerContextAdmin(TenantAdmin):
    form = OrgServerContextForm
    org_admin_can_add = True
    org_admin_can_delete = True
    list_display = ("organization", "server", "updated_at", "updated_by")
    list_filter = ("organization",)
    search_fields = ("server__name", "organization__name", "context")
    list_select_related = ("organization", "server", "updated_by")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.manageable_by(request.user)
        if db_field.name == "server":
            kwargs["queryset"] = McpServer.objects.visible_to(request.user).live()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        saved = services.org_context_set(
            actor=request.user,
            organization=obj.organization,
            server=obj.server,
            context=obj.context,
            ip=client_ip(request),
        )
        if saved is not None:
            obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.org_context_set(
            actor=request.user, organization=obj.organization, server=obj.server, context="", ip=client_ip(request)
        )


@admin.register(Gateway)
class GatewayAdmin(TenantAdmin):
    org_admin_can_change = False
    list_display = ("name", "owner", "endpoint", "deleted_at", "created_at")
    search_fields = ("name", "slug", "endpoint", "owner__email")
    list_select_related = ("owner",)
    fields = ("id", "owner", "name", "slug", "endpoint", "sources", "created_at", "updated_at", "deleted_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(McpTool)
class McpToolAdmin(TenantAdmin):
    org_admin_can_change = False
    list_display = ("name", "server", "needs_review", "changed_at", "removed_at", "last_seen")
    list_filter = ("needs_review",)
    search_fields = ("name", "server__name", "description")
    list_select_related = ("server",)
    fields = (
        "server",
        "name",
        "title",
        "description",
        "input_schema",
        "output_schema",
        "annotations",
        "digest",
        "previous_digest",
        "first_seen",
        "last_seen",
        "changed_at",
        "needs_review",
        "removed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False
