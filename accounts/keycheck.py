"""Start-up check of FIELD_ENCRYPTION_KEY against a stored canary."""

from __future__ import annotations

from django.db import DatabaseError

from accounts.crypto import DecryptionError
from accounts.models import EncryptionCanary


def verify_encryption_key() -> bool:
    """Raise DecryptionError if the configured keys cannot open the canary.

    Writes the canary on first use. Returns False when the table is not there
    yet (before `migrate`), True when the key was checked.
    """
    try:
        canary = EncryptionCanary.objects.filter(pk=1).first()
        if canary is None:
            EncryptionCanary.objects.get_or_create(pk=1, defaults={"value": EncryptionCanary.PLAINTEXT})
            return True
    except DecryptionError:
        raise
    except DatabaseError:
        return False
    if canary.value != EncryptionCanary.PLAINTEXT:
        raise DecryptionError("FIELD_ENCRYPTION_KEY opens the canary but it holds the wrong value.")
    return True
