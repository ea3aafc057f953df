from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record


class Command(BaseCommand):
    help = (
        "Delete guest accounts that expired more than --grace-hours ago, with everything they made. "
        "Safe to run in several processes at once (rows are claimed with SKIP LOCKED)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--grace-hours", type=int, default=24)

    def handle(self, *args, grace_hours, **options):
        cutoff = timezone.now() - timezone.timedelta(hours=grace_hours)
        deleted = 0
        while True:
            with transaction.atomic():
                batch = list(
                    User.objects.select_for_update(skip_locked=True)
                    .filter(is_guest=True, guest_expires_at__lt=cutoff)
                    .values_list("pk", flat=True)[:200]
                )
                if not batch:
                    break
                for pk in batch:
                    audit_record(actor=None, action="guest.prune", target_type="accounts.user", target_id=str(pk))
                User.objects.filter(pk__in=batch).delete()
                deleted += len(batch)
        self.stdout.write(f"Deleted {deleted} expired guest account(s).")
