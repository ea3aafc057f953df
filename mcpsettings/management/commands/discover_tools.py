from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mcpsettings import discovery
from mcpsettings.models import McpServer


class Command(BaseCommand):
    help = (
        "Discover the tools of the given servers (ids), or of every live, active server with --all. "
        "Safe to run in several processes at once: each server is claimed with a row lock that others skip."
    )

    def add_arguments(self, parser):
        parser.add_argument("server_ids", nargs="*")
        parser.add_argument("--all", action="store_true", help="Every live, active server.")

    def handle(self, *args, server_ids, all, **options):
        if not server_ids and not all:
            raise CommandError("Name server ids, or pass --all.")
        qs = McpServer.objects.live().filter(is_active=True)
        if not all:
            qs = qs.filter(pk__in=server_ids)
        ok = failed = skipped = 0
        for pk in list(qs.order_by("pk").values_list("pk", flat=True)):
            with transaction.atomic():
                # Claimed by another process right now? Skip it; that process is discovering it.
                server = McpServer.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
                if server is None:
                    skipped += 1
                    continue
                result = discovery.discover(server)
            if result.ok:
                ok += 1
                self.stdout.write(f"{server.name}: {result.tools_count} tools ({result.protocol_version}).")
            else:
                failed += 1
                self.stdout.write(f"{server.name}: failed: {result.detail}")
        self.stdout.write(f"Done: {ok} discovered, {failed} failed, {skipped} skipped (claimed elsewhere).")
