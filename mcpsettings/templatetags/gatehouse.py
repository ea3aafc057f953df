import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for display (autoescaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
