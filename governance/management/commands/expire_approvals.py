from django.core.management.base import BaseCommand

from governance import services


class Command(BaseCommand):
    help = (
        "Write down the expiry of approval requests whose time is up and forget the full arguments of requests "
        "that can no longer run (reads already treat them as expired). Safe to run often."
    )

    def handle(self, *args, **options):
        expired = services.approval_requests_expire()
        forgotten = services.approval_requests_forget_arguments()
        self.stdout.write(f"Expired {expired} request(s); forgot the arguments of {forgotten}.")
