from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from accounts import ratelimit
from accounts.models import ALL_SCOPES, Role, Scope


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    username = forms.CharField(label="Display name", max_length=150, required=False)
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))


ClaimForm = SignupForm


class LoginForm(AuthenticationForm):
    """Django's log-in form, with failed attempts rate-limited per (IP, email)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "rate_limited": "Too many failed log-in attempts. Wait a few minutes and try again.",
    }

    def _ident(self) -> str:
        ip = ratelimit.client_ip(self.request) if self.request else None
        return f"{ip}|{(self.data.get('username') or '').strip().lower()}"

    def clean(self):
        limit, window = settings.LOGIN_RATE_LIMIT
        if ratelimit.is_limited("login", self._ident(), limit):
            raise forms.ValidationError(self.error_messages["rate_limited"], code="rate_limited")
        try:
            return super().clean()
        except forms.ValidationError:
            ratelimit.record_failure("login", self._ident(), window)
            raise


class ApiKeyForm(forms.Form):
    EXPIRY_CHOICES = [
        ("", "Never"),
        ("7", "In 7 days"),
        ("30", "In 30 days"),
        ("90", "In 90 days"),
        ("365", "In a year"),
    ]

    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=ALL_SCOPES)
    expires_in_days = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, required=False)


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(max_length=60, required=False, help_text="Leave empty to derive it from the name.")
    contact_email = forms.EmailField(required=False)


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label="Email", max_length=254, help_text="They join only when they accept, signed in with this email."
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
