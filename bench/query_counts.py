"""SQL queries per page, as the bench user: `python bench/query_counts.py EMAIL PATH...` prints a JSON list.

Run by bench/run.py with the bench's environment (its database); each path is fetched once to warm
caches, then counted.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounts.models import User  # noqa: E402


def main(email: str, paths: list[str]) -> None:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(email=email))
    counts = []
    for path in paths:
        client.get(path)
        with CaptureQueriesContext(connection) as ctx:
            client.get(path)
        counts.append(len(ctx.captured_queries))
    print(json.dumps(counts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
