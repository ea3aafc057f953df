from django.core.management.base import BaseCommand

from governance import services


class Command(BaseCommand):
    help = (
        "Mark calls whose record was opened but never completed (the database failed after the upstream ran) "
        "as unfinished, and count them in usage. Safe to run often and from several machines."
    )

    def handle(self, *args, **options):
        settled = services.request_logs_settle()
        self.stdout.write(f"Settled {settled} unfinished call(s).")
