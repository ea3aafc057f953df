"""WSGI entry point (gunicorn, runserver)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Refuse to serve with a FIELD_ENCRYPTION_KEY that cannot read the stored secrets.
from accounts.keycheck import verify_encryption_key  # noqa: E402

verify_encryption_key()
