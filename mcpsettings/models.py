"""MCP server configurations, credentials, OAuth clients, org context and gateways."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower

from accounts.crypto import EncryptedTextField
from accounts.models import Organization


class AuthType(models.TextChoices):
    NONE = "none", "No authentication"
    BEARER = "bearer", "Bearer token"
    HEADER = "header", "Custom header"
    OAUTH = "oauth", "OAuth 2.1"


class ServerStatus(models.TextChoices):
    PENDING_SETUP = "pending_setup", "Pending setup"
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"


class RegistrationMode(models.TextChoices):
    DCR = "dcr", "Dynamic client registration"
    CIMD = "cimd", "Client ID metadata document"
    MANUAL = "manual", "Manual (client ID and secret)"


class Transport(models.TextChoices):
    STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"
    SSE = "sse", "HTTP+SSE (legacy, 2024-11-05)"


def _user_org_ids(user):
    return Organization.objects.filter(memberships__user=user).values("pk")


class SoftDeleteQuerySet(models.QuerySet):
    """Soft delete: `deleted_at` set = in the trash (restorable), not gone."""

    def live(self):
        return self.filter(deleted_at__isnull=True)

    def trashed(self):
        return self.filter(deleted_at__isnull=False)


class McpServerQuerySet(SoftDeleteQuerySet):
    def visible_to(self, user) -> McpServerQuerySet:
        """Servers the user may see and use: their own, their orgs', those shared with their orgs, and global ones.

        Soft-deleted servers are included; callers pick `.live()` or `.trashed()`.
        """
        if not user.is_authenticated:
            return self.none()
        scope = McpServer.orgs.through.objects.filter(mcpserver=OuterRef("pk"))
        return self.filter(
            Q(owner=user)
            | Q(organization__in=_user_org_ids(user))
            | Exists(scope.filter(organization__in=_user_org_ids(user)))
            | (Q(owner__isnull=True, organization__isnull=True) & ~Exists(scope))
        )

    def for_org(self, organization: Organization) -> McpServerQuerySet:
        """Servers every member of this org can see (personal servers excluded)."""
        scope = McpServer.orgs.through.objects.filter(mcpserver=OuterRef("pk"))
        return self.filter(
            Q(organization=organization)
            | Exists(scope.filter(organization=organization))
            | (Q(owner__isnull=True, organization__isnull=True) & ~Exists(scope))
        )

    def manageable_by(self, user) -> McpServerQuerySet:
        """Servers the user may change: their own, and their administered orgs' (superusers: all)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(Q(owner=user) | Q(organization__in=Organization.objects.manageable_by(user).values("pk")))


class McpServer(models.Model):
    """An upstream MCP server. Personal (owner), an org's (organization), or operator-run (neither):
    operator-run servers are global when `orgs` is empty, else visible to the members of `orgs`.
    Org servers may also be shared with more orgs through `orgs`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="mcp_servers"
    )
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="mcp_servers"
    )
    orgs = models.ManyToManyField(Organization, blank=True, related_name="shared_mcp_servers")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    endpoint_url = models.URLField(max_length=2048)
    transport = models.CharField(max_length=30, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NONE)
    header_name = models.CharField(max_length=100, blank=True, help_text="For custom-header auth, e.g. X-API-Key.")
    is_active = models.BooleanField(default=True)
    status = models.CharField(max_length=20, choices=ServerStatus.choices, default=ServerStatus.PENDING_SETUP)
    status_detail = models.TextField(blank=True)
    new_tools_enabled = models.BooleanField(
        default=True, help_text="Whether tools discovered later start enabled (else blocked until allowed)."
    )
    auto_allow_read_only = models.BooleanField(
        default=False, help_text="Run tools annotated read-only without asking a human."
    )
    config = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="How long a request to this server may take, whole answer included (empty: MCP_HTTP_TIMEOUT).",
    )
    # What the server told us at discovery.
    protocol_version = models.CharField(max_length=20, blank=True)
    server_info = models.JSONField(default=dict, blank=True)
    capabilities = models.JSONField(default=dict, blank=True)
    instructions = models.TextField(blank=True)
    tools_manifest = models.JSONField(default=list, blank=True)
    manifest_fetched_at = models.DateTimeField(null=True, blank=True)
    # OAuth settings (the flow lives in mcpsettings/oauth/).
    oauth_issuer_url = models.URLField(max_length=2048, blank=True)
    registration_mode = models.CharField(max_length=10, choices=RegistrationMode.choices, default=RegistrationMode.DCR)
    scopes = models.JSONField(default=list, blank=True)
    extra_auth_params = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = McpServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner__isnull=True) | Q(organization__isnull=True),
                name="mcpsettings_mcpserver_one_owner",
            ),
            models.UniqueConstraint(
                "owner",
                Lower("name"),
                condition=Q(owner__isnull=False, deleted_at__isnull=True),
                name="mcpsettings_mcpserver_owner_name_ci_unique",
            ),
            models.UniqueConstraint(
                "organization",
                Lower("name"),
                condition=Q(organization__isnull=False, deleted_at__isnull=True),
                name="mcpsettings_mcpserver_org_name_ci_unique",
            ),
            models.UniqueConstraint(
                Lower("name"),
                condition=Q(owner__isnull=True, organization__isnull=True, deleted_at__isnull=True),
                name="mcpsettings_mcpserver_global_name_ci_unique",
            ),
        ]
        indexes = [models.Index(fields=["owner", "deleted_at"], name="mcpsettings_server_owner_live")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def is_visible_to(self, user) -> bool:
        """The same rule as McpServerQuerySet.visible_to, for one server already in hand (cheaper on the call path)."""
        if not user.is_authenticated:
            return False
        if self.owner_id is not None:
            return self.owner_id == user.pk
        scope = set(self.orgs.values_list("pk", flat=True))
        if self.organization_id is None and not scope:
            return True  # global
        mine = set(Organization.objects.filter(memberships__user=user).values_list("pk", flat=True))
        return self.organization_id in mine or bool(scope & mine)

    @property
    def tools_count(self) -> int:
        return len(self.tools_manifest or [])

    @property
    def kind(self) -> str:
        if self.owner_id:
            return "personal"
        if self.organization_id:
            return "organization"
        return "operator"


class ServerChildQuerySet(models.QuerySet):
    """For rows that belong to a server: visible and manageable with the server."""

    def manageable_by(self, user):
        return self.filter(server__in=McpServer.objects.manageable_by(user).values("pk"))


def tool_needs_tasks(extra) -> bool:
    """A tool the server runs only as a task (MCP tasks: `execution.taskSupport` "required"). Gatehouse does
    not proxy tasks yet, so such a tool is shown to people as unusable and never offered to agents."""
    execution = (extra or {}).get("execution") if isinstance(extra, dict) else None
    return isinstance(execution, dict) and execution.get("taskSupport") == "required"


class McpToolQuerySet(ServerChildQuerySet):
    def present(self) -> McpToolQuerySet:
        return self.filter(removed_at__isnull=True)


class McpTool(models.Model):
    """A tool as discovered on a server. `digest` fingerprints what an agent is told about it."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    title = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    extra = models.JSONField(
        default=dict, blank=True, help_text="What else the server says of the tool: execution, icons, _meta."
    )
    digest = models.CharField(max_length=64)
    previous_digest = models.CharField(max_length=64, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()
    changed_at = models.DateTimeField(null=True, blank=True)
    needs_review = models.BooleanField(
        default=False, help_text="Its description, schema or annotations changed since it was approved."
    )
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = McpToolQuerySet.as_manager()

    class Meta:
        ordering = ["server", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="mcpsettings_mcptool_server_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.server.name}: {self.name}"

    @property
    def needs_tasks(self) -> bool:
        return tool_needs_tasks(self.extra)


class ItemKind(models.TextChoices):
    RESOURCE = "resource", "Resource"
    TEMPLATE = "resource_template", "Resource template"
    PROMPT = "prompt", "Prompt"


class McpItemQuerySet(ServerChildQuerySet):
    def present(self) -> McpItemQuerySet:
        return self.filter(removed_at__isnull=True)


class McpItem(models.Model):
    """A resource, resource template or prompt as discovered on a server (tools are McpTool).

    `key` is what names it on the server: a resource's URI, a template's URI template, a prompt's name.
    `definition` is the item as the server described it (screened, cut of secrets), passed on to agents.
    """

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=20, choices=ItemKind.choices)
    key = models.TextField()
    key_digest = models.CharField(max_length=64, help_text="SHA-256 of the key: unique per server and kind.")
    name = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True)
    definition = models.JSONField(default=dict, blank=True)
    digest = models.CharField(max_length=64)
    previous_digest = models.CharField(max_length=64, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()
    changed_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = McpItemQuerySet.as_manager()

    class Meta:
        ordering = ["server", "kind", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "kind", "key_digest"], name="mcpsettings_mcpitem_server_kind_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key[:80]}"


class TokenStatus(models.TextChoices):
    VALID = "valid", "Valid"
    EXPIRED = "expired", "Expired"
    REFRESH_FAILED = "refresh_failed", "Refresh failed"


class Credential(models.Model):
    """Secrets for one server: per user (and org context), or shared (user empty) for the whole server.

    Secret columns are encrypted; nothing outside the MCP client ever reads them.
    """

    SECRET_FIELDS = ("access_token", "refresh_token", "header_value")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="credentials")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="mcp_credentials"
    )
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Org context."
    )
    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    header_value = EncryptedTextField(blank=True, default="")
    token_type = models.CharField(max_length=20, blank=True, default="Bearer")
    token_status = models.CharField(max_length=20, choices=TokenStatus.choices, default=TokenStatus.VALID)
    expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerChildQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server"], condition=Q(user__isnull=True), name="mcpsettings_credential_shared_unique"
            ),
            models.UniqueConstraint(
                fields=["server", "user"],
                condition=Q(user__isnull=False, organization__isnull=True),
                name="mcpsettings_credential_user_unique",
            ),
            models.UniqueConstraint(
                fields=["server", "user", "organization"],
                condition=Q(user__isnull=False, organization__isnull=False),
                name="mcpsettings_credential_user_org_unique",
            ),
        ]

    def __str__(self) -> str:
        who = self.user or "shared"
        return f"Credential for {self.server} ({who})"

    @property
    def is_set(self) -> bool:
        return bool(self.access_token or self.header_value)


class OAuthClient(models.Model):
    """Gatehouse's OAuth client at one authorization server, for one MCP server."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="oauth_clients")
    issuer = models.URLField(max_length=2048)
    registration_mode = models.CharField(max_length=10, choices=RegistrationMode.choices)
    client_id = models.CharField(max_length=2048)
    client_secret = EncryptedTextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerChildQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "issuer"], name="mcpsettings_oauthclient_server_issuer_unique")
        ]

    def __str__(self) -> str:
        return f"{self.client_id[:24]} at {self.issuer}"


class OrgServerContextQuerySet(models.QuerySet):
    def visible_to(self, user) -> OrgServerContextQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(organization__in=_user_org_ids(user), server__in=McpServer.objects.visible_to(user).live())

    def manageable_by(self, user) -> OrgServerContextQuerySet:
        return self.filter(organization__in=Organization.objects.manageable_by(user).values("pk"))


class OrgServerContext(models.Model):
    """Org-specific instructions about a server, injected into agents' system prompt."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="server_contexts")
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="org_contexts")
    context = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrgServerContextQuerySet.as_manager()

    class Meta:
        ordering = ["organization__name", "server__name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "server"], name="mcpsettings_orgservercontext_unique")
        ]

    def __str__(self) -> str:
        return f"{self.organization} × {self.server}"


class GatewayQuerySet(SoftDeleteQuerySet):
    def visible_to(self, user) -> GatewayQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(owner=user)

    def manageable_by(self, user) -> GatewayQuerySet:
        if user.is_authenticated and user.is_superuser:
            return self
        return self.visible_to(user)


class Gateway(models.Model):
    """An agent-facing MCP endpoint bundling chosen upstream servers (its sources)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gateways")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=80, unique=True)
    endpoint = models.CharField(max_length=2048, unique=True)
    sources = models.ManyToManyField(McpServer, blank=True, related_name="gateways")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = GatewayQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                Lower("name"),
                condition=Q(deleted_at__isnull=True),
                name="mcpsettings_gateway_owner_name_ci_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class McpSession(models.Model):
    """A session of an MCP client with Gatehouse's own endpoint (handshake protocol versions).

    Only a digest of the session id is stored; the session is bound to the API key's user.
    """

    id = models.CharField(primary_key=True, max_length=64, help_text="SHA-256 of the session id.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.CASCADE, related_name="+")
    gateway = models.ForeignKey(Gateway, null=True, blank=True, on_delete=models.CASCADE, related_name="sessions")
    protocol_version = models.CharField(max_length=20)
    client_info = models.JSONField(default=dict, blank=True)
    client_capabilities = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"MCP session {self.id[:8]}"
