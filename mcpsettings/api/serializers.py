from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mcpsettings.models import AuthType, Gateway, McpServer, RegistrationMode, Transport


class McpServerSerializer(serializers.ModelSerializer):
    """A server as the API shows it. Never a secret: only whether one is set, and its status."""

    has_credentials = serializers.SerializerMethodField()
    token_status = serializers.SerializerMethodField()
    credential_updated_at = serializers.SerializerMethodField()
    tools_count = serializers.IntegerField(read_only=True)
    org = serializers.SerializerMethodField()
    org_id = serializers.UUIDField(source="organization_id", read_only=True, allow_null=True)
    orgs = serializers.SerializerMethodField()
    is_global = serializers.SerializerMethodField()
    can_manage = serializers.BooleanField(read_only=True)

    class Meta:
        model = McpServer
        fields = [
            "id",
            "name",
            "endpoint_url",
            "is_active",
            "status",
            "status_detail",
            "auth_type",
            "has_credentials",
            "token_status",
            "tools_count",
            "protocol_version",
            "org",
            "created_at",
            "updated_at",
            "deleted_at",
            # Beyond the contract's minimum:
            "description",
            "header_name",
            "kind",
            "org_id",
            "orgs",
            "is_global",
            "new_tools_enabled",
            "manifest_fetched_at",
            "credential_updated_at",
            "can_manage",
            "registration_mode",
            "scopes",
            "extra_auth_params",
            "oauth_issuer_url",
            "token_expires_at",
            "timeout_seconds",
            "transport",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_has_credentials(self, obj) -> bool:
        cred = getattr(obj, "credential", None)
        return bool(cred and cred.is_set)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_token_status(self, obj) -> str | None:
        cred = getattr(obj, "credential", None)
        return cred.token_status if cred and cred.is_set else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_credential_updated_at(self, obj):
        cred = getattr(obj, "credential", None)
        return serializers.DateTimeField().to_representation(cred.updated_at) if cred and cred.is_set else None

    token_expires_at = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_token_expires_at(self, obj):
        cred = getattr(obj, "credential", None)
        return serializers.DateTimeField().to_representation(cred.expires_at) if cred and cred.expires_at else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_org(self, obj) -> str | None:
        return obj.organization.slug if obj.organization_id else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_orgs(self, obj) -> list[str]:
        return sorted(o.slug for o in obj.orgs.all())

    @extend_schema_field(serializers.BooleanField())
    def get_is_global(self, obj) -> bool:
        return obj.kind == "operator" and not obj.orgs.all()


class McpServerListSerializer(serializers.Serializer):
    mcps = McpServerSerializer(many=True)
    count = serializers.IntegerField()


class McpServerWriteSerializer(serializers.Serializer):
    """Shapes and types only; the service applies the rules (SSRF, uniqueness, cap, permissions)."""

    name = serializers.CharField(max_length=100, trim_whitespace=True)
    endpoint_url = serializers.CharField(max_length=2048)
    auth_type = serializers.ChoiceField(choices=AuthType.values, default=AuthType.NONE)
    token = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=True,
        max_length=8192,
        style={"input_type": "password"},
    )
    clear_token = serializers.BooleanField(required=False, write_only=True)
    header_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    org = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Slug or id of the organization that owns the server.",
    )
    orgs = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="More orgs to share the server with (slugs or ids)."
    )
    is_global = serializers.BooleanField(required=False, default=False, help_text="Superusers only.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    is_active = serializers.BooleanField(required=False, default=True)
    new_tools_enabled = serializers.BooleanField(required=False, default=True)
    transport = serializers.ChoiceField(
        choices=Transport.values,
        required=False,
        help_text="streamable_http (default) or sse (HTTP+SSE of 2024-11-05); detected at discovery when unsure.",
    )
    timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, help_text="1–600 s for one request to this server; null: the site default."
    )
    oauth_issuer_url = serializers.CharField(required=False, allow_blank=True, max_length=2048)
    registration_mode = serializers.ChoiceField(choices=RegistrationMode.values, required=False)
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    extra_auth_params = serializers.DictField(child=serializers.CharField(max_length=2000), required=False)
    oauth_client_id = serializers.CharField(required=False, allow_blank=True, max_length=2048, write_only=True)
    oauth_client_secret = serializers.CharField(
        required=False, allow_blank=True, max_length=4096, write_only=True, style={"input_type": "password"}
    )


OAUTH_WRITE_FIELDS = (
    "oauth_issuer_url",
    "registration_mode",
    "scopes",
    "extra_auth_params",
    "oauth_client_id",
    "oauth_client_secret",
)


class GatewaySerializer(serializers.ModelSerializer):
    source_ids = serializers.SerializerMethodField()
    endpoint_url = serializers.SerializerMethodField()

    class Meta:
        model = Gateway
        fields = [
            "id",
            "name",
            "slug",
            "endpoint",
            "endpoint_url",
            "source_ids",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_source_ids(self, obj) -> list[str]:
        return sorted(str(s.pk) for s in obj.sources.all())

    @extend_schema_field(serializers.CharField())
    def get_endpoint_url(self, obj) -> str:
        request = self.context.get("request")
        if obj.endpoint.startswith("/") and request is not None:
            return request.build_absolute_uri(obj.endpoint)
        return obj.endpoint


class GatewayListSerializer(serializers.Serializer):
    gateways = GatewaySerializer(many=True)
    count = serializers.IntegerField()


class GatewayWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    source_ids = serializers.ListField(child=serializers.CharField(), required=False)


class GatewaySourceSerializer(serializers.Serializer):
    server_id = serializers.CharField()


class ContextItemSerializer(serializers.Serializer):
    server = serializers.CharField()
    server_id = serializers.UUIDField()
    org = serializers.CharField()
    context = serializers.CharField()


class InstructionItemSerializer(serializers.Serializer):
    server = serializers.CharField()
    server_id = serializers.UUIDField()
    text = serializers.CharField()


class ContextSerializer(serializers.Serializer):
    contexts = ContextItemSerializer(many=True)
    instructions = InstructionItemSerializer(many=True)


class DiscoverSerializer(serializers.Serializer):
    status = serializers.CharField()
    tools_count = serializers.IntegerField(required=False)
    protocol_version = serializers.CharField(required=False)
    detail = serializers.CharField(required=False)
