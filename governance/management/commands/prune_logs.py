from django.core.management.base import BaseCommand, CommandError

from governance import services


class Command(BaseCommand):
    help = "Delete request logs older than N days, in batches. Daily usage rows are kept."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True)

    def handle(self, *args, days, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        deleted = services.prune_logs(days=days)
        self.stdout.write(f"Deleted {deleted} request log(s) older than {days} day(s).")
