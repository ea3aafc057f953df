from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiKey, Scope


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(source="is_live", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "created_at",
            "is_active",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.values),
        allow_empty=False,
        min_length=1,
        default=lambda: list(Scope.values),
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The raw key. Shown only in this answer.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyListSerializer(serializers.Serializer):
    api_keys = ApiKeySerializer(many=True)
    count = serializers.IntegerField()
