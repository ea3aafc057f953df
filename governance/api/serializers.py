from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance import approval_arguments
from governance.models import ApprovalRequest, ApprovalStatus, RequestLog, UsageDaily


class AgentToolSerializer(serializers.Serializer):
    server = serializers.CharField()
    server_id = serializers.UUIDField()
    name = serializers.CharField()
    qualified_name = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    input_schema = serializers.JSONField()
    annotations = serializers.JSONField()
    approval = serializers.CharField()
    approval_expires_at = serializers.DateTimeField(allow_null=True)


class AgentToolListSerializer(serializers.Serializer):
    tools = AgentToolSerializer(many=True)
    count = serializers.IntegerField()


class ToolCallSerializer(serializers.Serializer):
    server = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Server id or name; may be left out when `tool` is a `qualified_name` from GET /api/v1/tools.",
    )
    tool = serializers.CharField(max_length=300, help_text="The tool's name, or its `qualified_name`.")
    arguments = serializers.DictField(required=False, default=dict)
    approval_id = serializers.CharField(required=False, allow_blank=True, allow_null=True)


class ToolSettingsSerializer(serializers.Serializer):
    is_enabled = serializers.BooleanField(required=False)
    approval = serializers.ChoiceField(choices=["ask", "always", "never"], required=False)
    expires_in = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="Seconds, or 1h / 1d / 7d (with approval=always)."
    )
    layer = serializers.ChoiceField(
        choices=["org", "user"],
        required=False,
        help_text="org: for the whole organization (its admins); user: just you.",
    )


class ServerToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    input_schema = serializers.JSONField()
    output_schema = serializers.JSONField(allow_null=True)
    annotations = serializers.JSONField()
    digest = serializers.CharField()
    needs_review = serializers.BooleanField()
    needs_tasks = serializers.BooleanField(
        help_text="Runs only as an MCP task, which Gatehouse does not proxy: never offered to agents."
    )
    changed_at = serializers.DateTimeField(allow_null=True)
    is_enabled = serializers.BooleanField()
    org_enabled = serializers.BooleanField(allow_null=True)
    user_enabled = serializers.BooleanField(allow_null=True)
    approval = serializers.CharField()
    approval_expires_at = serializers.DateTimeField(allow_null=True)
    auto_approved = serializers.BooleanField()


class ItemSettingsSerializer(serializers.Serializer):
    is_enabled = serializers.BooleanField()
    layer = serializers.ChoiceField(
        choices=["org", "user"],
        required=False,
        help_text="org: for the whole organization (its admins); user: just you.",
    )


class ServerItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["resource", "resource_template", "prompt"])
    key = serializers.CharField(help_text="The resource's URI, the template's URI template or the prompt's name.")
    name = serializers.CharField(allow_blank=True)
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    definition = serializers.JSONField(help_text="The item as the server describes it.")
    changed_at = serializers.DateTimeField(allow_null=True)
    is_enabled = serializers.BooleanField()
    org_enabled = serializers.BooleanField(allow_null=True)
    user_enabled = serializers.BooleanField(allow_null=True)


class ApprovalSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=ApprovalStatus.choices, source="current_status", read_only=True)
    server = serializers.CharField(source="server.name")
    server_id = serializers.UUIDField()
    tool = serializers.CharField(source="tool_name")
    arguments = serializers.JSONField(read_only=True, help_text="A preview: redacted, and long values truncated.")
    arguments_complete = serializers.SerializerMethodField(
        help_text="True when `arguments` is exactly the full arguments (nothing redacted or truncated)."
    )
    annotations = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "status",
            "server",
            "server_id",
            "tool",
            "arguments",
            "arguments_complete",
            "annotations",
            "decision",
            "decided_at",
            "expires_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_arguments_complete(self, obj) -> bool:
        return approval_arguments.preview_is_complete(obj)

    def get_annotations(self, obj) -> dict:
        tools = self.context.get("annotations") or {}
        return tools.get((obj.server_id, obj.tool_name), {})


class ApprovalDetailSerializer(ApprovalSerializer):
    """One request, with what "once" would let run: its digest, and (asked for) the full arguments."""

    arguments_digest = serializers.SerializerMethodField(
        help_text="SHA-256 the approval is bound to; send it back with a decision to prove what you saw. Given only "
        "when what you are shown is everything (`arguments_complete`) or with ?reveal=true: allowing once needs it."
    )
    arguments_available = serializers.SerializerMethodField(
        help_text="Whether the full arguments are held (while the request is pending or approved once, unused)."
    )
    arguments_full = serializers.SerializerMethodField(
        help_text="With ?reveal=true (a session, or a key with the `manage` scope): the full arguments, with only "
        "secrets Gatehouse holds (the server's credentials, API keys) masked. Null otherwise, or when not available."
    )

    class Meta(ApprovalSerializer.Meta):
        fields = [*ApprovalSerializer.Meta.fields, "arguments_digest", "arguments_available", "arguments_full"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_arguments_digest(self, obj) -> str | None:
        revealed = self.context.get("revealed")
        if (revealed is not None and revealed.available) or approval_arguments.preview_is_complete(obj):
            return obj.arguments_digest
        return None

    def get_arguments_available(self, obj) -> bool:
        return approval_arguments.full_arguments(obj) is not None

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_arguments_full(self, obj) -> Any:
        shown = self.context.get("revealed")  # the view's approval_arguments.shown(…, reveal=True), if asked
        if shown is None or not shown.available:
            return None
        return approval_arguments.strict_json(shown.value)


class ApprovalListSerializer(serializers.Serializer):
    approvals = ApprovalSerializer(many=True)
    count = serializers.IntegerField()


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["once", "always", "never", "deny"])
    expires_in = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    arguments_digest = serializers.CharField(
        required=False,
        max_length=64,
        help_text="The `arguments_digest` of the request you looked at; a mismatch is refused. Required to allow "
        "once when `arguments_complete` is false.",
    )


class RequestLogSerializer(serializers.ModelSerializer):
    server = serializers.CharField(source="server_name")
    tool = serializers.CharField(source="tool_name")

    class Meta:
        model = RequestLog
        fields = [
            "id",
            "created_at",
            "server",
            "server_id",
            "tool",
            "method",
            "via",
            "status",
            "status_code",
            "duration_ms",
            "request_body",
            "response_body",
            "error_message",
            "ip",
            "user_agent",
        ]
        read_only_fields = fields


class UsageSerializer(serializers.ModelSerializer):
    server = serializers.SerializerMethodField()
    org = serializers.SerializerMethodField()

    class Meta:
        model = UsageDaily
        fields = ["date", "server", "server_id", "org", "request_count", "successful", "failed", "total_duration_ms"]
        read_only_fields = fields

    def get_server(self, obj) -> str | None:
        return obj.server.name if obj.server_id and obj.server else None

    def get_org(self, obj) -> str | None:
        return obj.organization.slug if obj.organization_id and obj.organization else None


class LogPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = RequestLogSerializer(many=True)


class UsageListSerializer(serializers.Serializer):
    usage = UsageSerializer(many=True)
    count = serializers.IntegerField()
    days = serializers.IntegerField()
