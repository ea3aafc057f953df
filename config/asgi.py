"""ASGI entry point (uvicorn, daphne, hypercorn)."""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

# Refuse to serve with a FIELD_ENCRYPTION_KEY that cannot read the stored secrets, as config/wsgi.py does.
from django.db import connections  # noqa: E402

from accounts.keycheck import verify_encryption_key  # noqa: E402


def _verify_in_worker_thread() -> None:
    try:
        verify_encryption_key()
    finally:
        connections.close_all()  # this thread's connections; the thread ends here


def _verify_encryption_key_at_start_up() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        verify_encryption_key()
        return
    # uvicorn and hypercorn import the application inside their event loop, where Django refuses ORM calls
    # (SynchronousOnlyOperation); run the check in a thread and wait for it, so start-up still fails loudly.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_verify_in_worker_thread).result()


_verify_encryption_key_at_start_up()
