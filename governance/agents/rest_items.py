"""The REST side of resources, resource templates, prompts and completion (the /mcp side is mcp_items):
lists of what the key's user may use, and governed reads answered like `POST /api/v1/tools/call`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import key_from_header
from accounts.models import ApiKey
from governance import calls, selectors
from governance.agents.common import request_facts
from governance.agents.rest import call_answer
from governance.item_selectors import item_view, item_views, resource_view
from mcpsettings.models import ItemKind


class ServerRef(serializers.Serializer):
    server = serializers.CharField(help_text="Server id or name.")


class ResourceReadSerializer(ServerRef):
    uri = serializers.CharField(max_length=2048, help_text="The resource's URI on that server.")


class PromptGetSerializer(ServerRef):
    prompt = serializers.CharField(max_length=200)
    arguments = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


class CompletionSerializer(ServerRef):
    ref = serializers.DictField(help_text='{"type": "ref/prompt", "name"} or {"type": "ref/resource", "uri"}')
    argument = serializers.DictField(help_text='{"name", "value"}')
    context = serializers.DictField(required=False)


class AgentResourceListSerializer(serializers.Serializer):
    resources = serializers.ListField(child=serializers.DictField(), help_text="server, server_id, uri, name, …")
    resource_templates = serializers.ListField(
        child=serializers.DictField(), help_text="server, server_id, uriTemplate, …"
    )
    count = serializers.IntegerField()


class AgentPromptListSerializer(serializers.Serializer):
    prompts = serializers.ListField(
        child=serializers.DictField(), help_text="server, server_id, name, qualified_name, …"
    )
    count = serializers.IntegerField()


def _entries(user, kind: str) -> list[dict]:
    servers = selectors.usable_servers(user)
    slugs = selectors.slugs_for(user)
    entries = []
    for view in item_views(user, servers, kind=kind):
        if view.enabled:
            entry = {"server": view.server.name, "server_id": str(view.server.pk), **view.item.definition}
            if kind == ItemKind.PROMPT:
                entry["qualified_name"] = selectors.qualified_name(slugs[view.server.pk], view.item.key)
            entries.append(entry)
    return entries


class AgentResourcesView(APIView):
    @extend_schema(responses=AgentResourceListSerializer, operation_id="resources_list")
    def get(self, request):
        resources = _entries(request.user, ItemKind.RESOURCE)
        templates = _entries(request.user, ItemKind.TEMPLATE)
        return Response({"resources": resources, "resource_templates": templates, "count": len(resources)})


class AgentPromptsView(APIView):
    @extend_schema(responses=AgentPromptListSerializer, operation_id="prompts_list")
    def get(self, request):
        prompts = _entries(request.user, ItemKind.PROMPT)
        return Response({"prompts": prompts, "count": len(prompts)})


class _GovernedItemView(APIView):
    required_scopes = {"POST": "call"}
    method = ""
    serializer_class: type[serializers.Serializer]

    def post(self, request):
        ser = self.serializer_class(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        who = {"user": request.user, "api_key": api_key, "via": "api", **request_facts(request)}
        server = selectors.callable_server(request.user, data["server"])
        if server is None:
            key = str(data.get("uri") or data.get("prompt") or "")
            result = calls.unknown_server(server_ref=data["server"], tool=key, arguments={}, method=self.method, **who)
            return call_answer(request, result)
        key, params, view = self.target(request.user, server, data)
        result = calls.governed_item(
            server=server,
            method=self.method,
            key=key,
            params=params,
            view=view,
            raw_key=key_from_header(request),
            **who,
        )
        return call_answer(request, result)


class ResourceReadView(_GovernedItemView):
    method, serializer_class = "resources/read", ResourceReadSerializer

    @extend_schema(request=ResourceReadSerializer, operation_id="resources_read")
    def post(self, request):
        return super().post(request)

    def target(self, user, server, data):
        return data["uri"], {"uri": data["uri"]}, resource_view(user, server, data["uri"])


class PromptGetView(_GovernedItemView):
    method, serializer_class = "prompts/get", PromptGetSerializer

    @extend_schema(request=PromptGetSerializer, operation_id="prompts_get")
    def post(self, request):
        return super().post(request)

    def target(self, user, server, data):
        view = item_view(user, server, ItemKind.PROMPT, data["prompt"])
        params = {"name": data["prompt"], **({"arguments": data["arguments"]} if data["arguments"] else {})}
        return data["prompt"], params, view


class CompletionView(_GovernedItemView):
    method, serializer_class = "completion/complete", CompletionSerializer

    @extend_schema(request=CompletionSerializer, operation_id="completion_complete")
    def post(self, request):
        return super().post(request)

    def target(self, user, server, data):
        ref, argument = data["ref"], data["argument"]
        kind, field = (ItemKind.PROMPT, "name") if ref.get("type") == "ref/prompt" else (ItemKind.TEMPLATE, "uri")
        key = str(ref.get(field) or "")
        view = item_view(user, server, kind, key)
        params = {
            "ref": {"type": ref.get("type"), field: key},
            "argument": {"name": str(argument.get("name", "")), "value": str(argument.get("value", ""))},
            **({"context": data["context"]} if data.get("context") else {}),
        }
        return key, params, view
