from __future__ import annotations

from django import forms

from accounts.models import Organization
from mcpsettings.models import AuthType, RegistrationMode, Transport

PERSONAL = "personal"
GLOBAL = "global"


def owner_choices(user) -> list[tuple[str, str]]:
    choices = [(PERSONAL, "Just me (personal)")]
    choices += [(o.slug, f"Organization: {o.name}") for o in Organization.objects.manageable_by(user)]
    if user.is_superuser:
        choices.append((GLOBAL, "Everyone (global server)"))
    return choices


class McpServerForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Unique among your servers, e.g. “My Notion”.")
    endpoint_url = forms.CharField(
        label="Endpoint URL",
        max_length=2048,
        widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp", "size": 60}),
        help_text=(
            "The server's Streamable HTTP endpoint (http or https). A stdio server (a command such as "
            "`npx …`) needs a bridge first: see the README."
        ),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    auth_type = forms.ChoiceField(label="Authentication", choices=AuthType.choices, initial=AuthType.NONE)
    token = forms.CharField(
        label="Token",
        required=False,
        max_length=8192,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Bearer token, or the custom header's value. Stored encrypted and never shown again.",
    )
    header_name = forms.CharField(
        label="Header name", required=False, max_length=100, help_text="For a custom header, e.g. X-API-Key."
    )
    owner = forms.ChoiceField(label="Who owns it", choices=[(PERSONAL, PERSONAL)], initial=PERSONAL)
    is_active = forms.BooleanField(label="Active (agents may use it)", required=False, initial=True)
    new_tools_enabled = forms.BooleanField(
        label="Enable newly discovered tools",
        required=False,
        initial=True,
        help_text="Untick to keep new tools blocked until someone allows them.",
    )
    transport = forms.ChoiceField(
        label="Transport",
        choices=Transport.choices,
        initial=Transport.STREAMABLE_HTTP,
        required=False,
        help_text="Most servers speak Streamable HTTP; older ones only HTTP+SSE (a URL ending in /sse). "
        "Detected at discovery when it is not the one chosen.",
    )
    timeout_seconds = forms.IntegerField(
        label="Timeout (seconds)",
        required=False,
        min_value=1,
        max_value=600,
        help_text="How long one request may take, whole answer included. Empty: the site default.",
    )
    clear_token = forms.BooleanField(label="Remove the stored token", required=False)
    registration_mode = forms.ChoiceField(
        label="OAuth client registration",
        choices=RegistrationMode.choices,
        initial=RegistrationMode.DCR,
        required=False,
        help_text="For OAuth servers. Manual: an admin registered Gatehouse at the provider.",
    )
    oauth_issuer_url = forms.CharField(
        label="Authorization server (optional)",
        required=False,
        max_length=2048,
        help_text="Only if the server does not publish its protected-resource metadata.",
    )
    scopes = forms.CharField(
        label="Scopes (optional)",
        required=False,
        max_length=2000,
        help_text="Space-separated; empty means what the server asks for.",
    )
    extra_auth_params = forms.CharField(
        label="Extra authorization parameters",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One key=value per line, e.g. audience=api.example.com",
        max_length=4000,
    )
    oauth_client_id = forms.CharField(label="OAuth client ID", required=False, max_length=2048)
    oauth_client_secret = forms.CharField(
        label="OAuth client secret",
        required=False,
        max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored one.",
    )

    def clean_scopes(self) -> list[str]:
        return self.cleaned_data["scopes"].split()

    def clean_extra_auth_params(self) -> dict[str, str]:
        params = {}
        for line in self.cleaned_data["extra_auth_params"].splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Write each line as key=value (not “{line[:40]}”).")
            params[key.strip()] = value.strip()
        return params

    def __init__(self, *args, user, editing: bool = False, has_token: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["owner"]
            if has_token:
                self.fields["token"].help_text = "A token is set. Leave empty to keep it; type a new one to replace it."
            else:
                del self.fields["clear_token"]
        else:
            del self.fields["clear_token"]
            self.fields["owner"].choices = owner_choices(user)
            if len(self.fields["owner"].choices) == 1:
                self.fields["owner"].widget = forms.HiddenInput()


class OrgContextForm(forms.Form):
    org = forms.CharField(widget=forms.HiddenInput())
    context = forms.CharField(
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Shown to your org's agents with this server's tools. Leave empty to remove it.",
    )


class GatewayForm(forms.Form):
    name = forms.CharField(max_length=100)


class GatewaySourceForm(forms.Form):
    server_id = forms.UUIDField(label="Server")


OAUTH_FIELDS = (
    "registration_mode",
    "oauth_issuer_url",
    "scopes",
    "extra_auth_params",
    "oauth_client_id",
    "oauth_client_secret",
)
