"""Seed benchmark data: a user (and API key), servers full of tools, and request log rows.

bench/run.py calls it on its own database: first for the user and key; then, after the call paths were
measured on a small catalog, for the large catalog (`--manifest realistic`: tools described the way real
servers describe them, about 1 KB each, so 100 tools make a ~100 KB manifest) and the request logs the read
paths are timed on. The last line of output is JSON.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.errors import Conflict
from accounts.models import ALL_SCOPES, User
from governance import services as governance_services
from governance.models import RequestLog
from mcpsettings import services as server_services
from mcpsettings.models import McpServer, McpTool, ServerStatus

# Never contacted: the scale servers are registered and given tools, but no call goes to them.
SCALE_ENDPOINT = "https://93.184.216.34/mcp"
BATCH = 5_000

# Vocabulary for realistic tool manifests (deterministic: the same seed gives the same bytes).
NOUNS = ("issue", "pull request", "repository", "document", "ticket", "calendar event", "invoice", "customer",
         "deployment", "incident", "dataset", "message", "file", "contact", "order", "build")  # fmt: skip
VERBS = ("search", "get", "create", "update", "list", "delete", "archive", "comment on", "assign", "export")
FIELDS = (
    ("query", {"type": "string", "description": "Free-text search; supports quoted phrases and -exclusions."}),
    ("owner", {"type": "string", "description": "Account or organization that owns the resource, e.g. acme."}),
    ("state", {"type": "string", "enum": ["open", "closed", "all"], "default": "open",
               "description": "Only items in this state."}),
    ("labels", {"type": "array", "items": {"type": "string"}, "maxItems": 20,
                "description": "Labels that must all be present."}),
    ("since", {"type": "string", "format": "date-time", "description": "Only items updated at or after this time."}),
    ("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 30,
               "description": "How many results to return per page."}),
    ("cursor", {"type": "string", "description": "Opaque cursor from a previous page's nextCursor."}),
    ("sort", {"type": "string", "enum": ["created", "updated", "relevance"], "description": "Sort order."}),
    ("include_archived", {"type": "boolean", "default": False, "description": "Also return archived items."}),
)  # fmt: skip


def realistic_tool(j: int) -> dict:
    """Title, description, schemas and annotations of about 1 KB, like a real server's tools/list entry."""
    verb, noun = VERBS[j % len(VERBS)], NOUNS[(j // len(VERBS)) % len(NOUNS)]
    props = dict(FIELDS[k % len(FIELDS)] for k in range(j % 3, j % 3 + 4))
    description = (
        f"{verb.capitalize()} {noun}s in the connected workspace. Results respect the permissions of the "
        f"connected account and are paginated; pass the returned cursor to fetch the next page. Use this when "
        f"the user asks to {verb} a {noun} by name, owner, label or date. Rate limited to 60 calls a minute."
    )
    tool = {
        "title": f"{verb.capitalize()} {noun}s",
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": props,
            "required": [next(iter(props))],
            "additionalProperties": False,
        },
        "annotations": {
            "readOnlyHint": verb in ("search", "get", "list", "export"),
            "destructiveHint": verb in ("delete", "archive"),
            "idempotentHint": verb != "create",
            "openWorldHint": True,
        },
        "output_schema": None,
    }
    if j % 4 == 0:
        tool["output_schema"] = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "object"}}, "nextCursor": {"type": "string"}},
        }
    return tool


@contextmanager
def explicit_created_at() -> Iterator[None]:
    """Let bulk_create keep the created_at we set (auto_now_add would stamp every row with now).

    Logs spread over time, one per second back from now, so date windows and keyset paging see a realistic
    history rather than a million rows in the same instant.
    """
    field = RequestLog._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


class Command(BaseCommand):
    help = (
        "Benchmark data: get or create a user, optionally an API key, N servers with M tools each (an 'always' "
        "approval for the first tool), and N request log rows. Prints JSON as its last line (including the "
        "raw API key: for benchmark databases only)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", help="Needed only when the user does not exist yet.")
        parser.add_argument("--key", metavar="NAME", help="Create an API key (all scopes) with this name.")
        parser.add_argument("--servers", type=int, default=0, help="New servers named scale-<i>.")
        parser.add_argument(
            "--tools",
            type=int,
            default=0,
            help="Tools t0..t<N-1> on each of the user's servers (new and existing; names already there are kept).",
        )
        parser.add_argument(
            "--manifest",
            choices=("minimal", "realistic"),
            default="minimal",
            help="minimal: 'A tool.' and an empty object schema; realistic: about 1 KB per tool (title, "
            "description, a schema with four described properties, annotations, some output schemas).",
        )
        parser.add_argument("--log-rows", type=int, default=0)
        parser.add_argument("--log-server", help="Server id the log rows point at (default: the user's first).")

    def handle(self, *args, email, password, key, servers, tools, manifest, log_rows, log_server, **options):
        if min(servers, tools, log_rows) < 0:
            raise CommandError("--servers, --tools and --log-rows cannot be negative.")
        try:
            with transaction.atomic():
                user = self._user(email, password)
                raw_key = None
                if key:
                    _, raw_key = account_services.api_key_create(actor=user, name=key, scopes=ALL_SCOPES)
                created = self._servers(user, servers)
                tool_count, approvals = self._tools(user, tools, realistic=manifest == "realistic")
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except Conflict as exc:  # e.g. MCP_MAX_SERVERS_PER_USER reached
            raise CommandError(str(exc)) from None
        logged = self._logs(user, log_rows, log_server) if log_rows else 0
        self.stdout.write(
            json.dumps(
                {
                    "user_id": str(user.pk),
                    "email": user.email,
                    "api_key": raw_key,
                    "server_ids": [str(server.pk) for server in created],
                    "tools_created": tool_count,
                    "manifest_bytes_per_tool": self._manifest_bytes(tools, manifest),
                    "approvals_set": approvals,
                    "log_rows": logged,
                }
            )
        )

    def _user(self, email: str, password: str | None) -> User:
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            return user
        if not password:
            raise CommandError(f"No user with email {email}; give --password to create one.")
        return account_services.user_signup(email=email, password=password)

    def _servers(self, user: User, count: int) -> list[McpServer]:
        taken = set(McpServer.objects.filter(owner=user).values_list("name", flat=True))
        names = (f"scale-{i}" for i in itertools.count() if f"scale-{i}" not in taken)
        created = [
            server_services.server_create(actor=user, name=next(names), endpoint_url=SCALE_ENDPOINT)
            for _ in range(count)
        ]
        # Stands in for discovery (the endpoint is never contacted): the servers are usable at once.
        McpServer.objects.filter(pk__in=[s.pk for s in created]).update(status=ServerStatus.ACTIVE, status_detail="")
        return created

    @staticmethod
    def _manifest_bytes(count: int, manifest: str) -> int:
        """Average JSON size of one seeded tool's tools/list entry (name, title, description, schemas)."""
        if not count:
            return 0
        entries = [{"name": f"t{j}", **(realistic_tool(j) if manifest == "realistic" else {})} for j in range(count)]
        return round(sum(len(json.dumps(e)) for e in entries) / count)

    def _tools(self, user: User, count: int, *, realistic: bool = False) -> tuple[int, int]:
        if not count:
            return 0, 0
        now = timezone.now()
        minimal = {"description": "A tool.", "input_schema": {"type": "object"}}
        mine = McpTool.objects.filter(server__owner=user)
        before = mine.count()
        approvals = 0
        for server in McpServer.objects.live().filter(owner=user).order_by("created_at"):
            McpTool.objects.bulk_create(
                [
                    McpTool(
                        server=server,
                        name=f"t{j}",
                        digest="0" * 64,
                        last_seen=now,
                        **(realistic_tool(j) if realistic else minimal),
                    )
                    for j in range(count)
                ],
                ignore_conflicts=True,
            )
            governance_services.tool_settings_update(actor=user, server=server, tool_name="t0", approval="always")
            approvals += 1
        return mine.count() - before, approvals

    def _logs(self, user: User, count: int, server_id: str | None) -> int:
        servers = McpServer.objects.filter(owner=user)
        server = servers.filter(pk=server_id).first() if server_id else servers.order_by("created_at").first()
        if server is None:
            raise CommandError("Log rows need a server of this user: give --servers or --log-server.")
        tool = McpTool.objects.filter(server=server).order_by("name").values_list("name", flat=True).first() or "echo"
        now = timezone.now()
        with explicit_created_at():
            for start in range(1, count + 1, BATCH):
                batch = []
                for g in range(start, min(start + BATCH, count + 1)):
                    failed = g % 10 == 0  # one call in ten failed upstream
                    batch.append(
                        RequestLog(
                            user=user,
                            server=server,
                            server_name=server.name,
                            tool_name=tool,
                            status="upstream_error" if failed else "ok",
                            status_code=502 if failed else 200,
                            duration_ms=g % 200,
                            user_agent="bench",
                            created_at=now - timedelta(seconds=g),
                        )
                    )
                RequestLog.objects.bulk_create(batch)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # fresh planner statistics, as after a day of real traffic
                cursor.execute(f"ANALYZE {RequestLog._meta.db_table}")
        return count
