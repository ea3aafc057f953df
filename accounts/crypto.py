"""Encryption at rest for secrets (Fernet, with key rotation).

Built on django-encrypted-model-fields' field, with two differences that matter:
the keys are read from settings at use time (so rotation and tests see the
current keys), and a value that cannot be decrypted raises `DecryptionError`
instead of being handed back as if the ciphertext were the plaintext — which,
once saved, would double-encrypt the secret for good.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from encrypted_model_fields.fields import EncryptedMixin


class DecryptionError(ImproperlyConfigured):
    """Stored ciphertext does not open with any key in FIELD_ENCRYPTION_KEY."""


@lru_cache(maxsize=4)
def _crypter_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty.")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as exc:
        # Never echo the key itself.
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY is malformed: {type(exc).__name__}") from None


def crypter() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEY
    if isinstance(keys, str):
        keys = [k for k in keys.split(",") if k]
    return _crypter_for(tuple(keys))


def encrypt(plaintext: str) -> str:
    return crypter().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return crypter().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY: the key is wrong or missing. "
            "Restore the key that encrypted it (keep it in the list to rotate)."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a stored token under the first key."""
    try:
        return crypter().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEY.") from None


class EncryptedTextField(EncryptedMixin, models.TextField):
    """Text encrypted in the database; plaintext only in memory.

    Values read from the database are always decrypted (or fail loudly);
    in-memory values are always plaintext, so `to_python` never guesses.
    """

    def to_python(self, value):
        return models.TextField.to_python(self, value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_db_prep_save(self, value, connection):
        value = models.TextField.get_db_prep_save(self, value, connection)
        if value is None or value == "":
            return value
        return encrypt(str(value))


def encrypted_fields() -> Iterator[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted columns, and the names of those columns."""
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            yield model, names
