from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.crypto import encrypted_fields

BATCH = 500


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column of every row under the first key of FIELD_ENCRYPTION_KEY. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args, **options):
        total = 0
        for model, names in encrypted_fields():
            ids = list(model._base_manager.order_by("pk").values_list("pk", flat=True))
            for start in range(0, len(ids), BATCH):
                self._rotate_batch(model, names, ids[start : start + BATCH])
            total += len(ids)
            self.stdout.write(f"{model._meta.label}: {len(ids)} row(s) re-encrypted ({', '.join(names)}).")
        self.stdout.write(self.style.SUCCESS(f"Done: {total} row(s) re-encrypted under the first key."))

    @staticmethod
    @transaction.atomic
    def _rotate_batch(model, names: list[str], ids: list) -> None:
        # Reading decrypts with any listed key (or fails loudly); writing encrypts with the first.
        rows = model._base_manager.filter(pk__in=ids).select_for_update().values_list("pk", *names)
        for pk, *values in rows:
            model._base_manager.filter(pk=pk).update(**dict(zip(names, values, strict=True)))
