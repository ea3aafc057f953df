import asyncio
import runpy

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from accounts.crypto import DecryptionError, decrypt, encrypt
from accounts.keycheck import verify_encryption_key
from accounts.models import EncryptionCanary

SECRET = "canary-secret-7f3a9c"


def raw_value() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM accounts_encryptioncanary WHERE id = 1")
        return cursor.fetchone()[0]


@pytest.fixture
def keys(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [old]
    return old, new


@pytest.mark.django_db
def test_value_is_encrypted_in_the_database_and_decrypted_on_read(keys):
    EncryptionCanary.objects.create(value=SECRET)
    assert SECRET not in raw_value()
    assert raw_value().startswith("gAAAA")  # a Fernet token
    assert EncryptionCanary.objects.get().value == SECRET


@pytest.mark.django_db
def test_wrong_key_fails_loudly_instead_of_returning_ciphertext(keys, settings):
    old, new = keys
    EncryptionCanary.objects.create(value=SECRET)
    stored = raw_value()
    settings.FIELD_ENCRYPTION_KEY = [new]  # well-formed, but not the key that encrypted
    with pytest.raises(DecryptionError) as info:
        EncryptionCanary.objects.get()
    assert SECRET not in str(info.value) and stored not in str(info.value) and new not in str(info.value)
    # Nothing was re-saved: the stored token is untouched, so the right key still opens it.
    assert raw_value() == stored
    settings.FIELD_ENCRYPTION_KEY = [old]
    assert EncryptionCanary.objects.get().value == SECRET


@pytest.mark.django_db
def test_start_up_check_refuses_a_wrong_key(keys, settings):
    old, new = keys
    assert verify_encryption_key() is True  # writes the canary
    assert EncryptionCanary.objects.get().value == EncryptionCanary.PLAINTEXT
    settings.FIELD_ENCRYPTION_KEY = [new]
    with pytest.raises(DecryptionError):
        verify_encryption_key()
    settings.FIELD_ENCRYPTION_KEY = [new, old]  # rotation list: still readable
    assert verify_encryption_key() is True


def start_asgi():
    """What an ASGI server does at start: import config.asgi (afresh) and take its application."""
    return runpy.run_module("config.asgi")["application"]


@pytest.mark.django_db(transaction=True)  # the check may run on a thread of its own, with its own connection
def test_asgi_start_up_refuses_a_wrong_key(keys, settings):
    old, new = keys
    assert callable(start_asgi())  # first start: writes the canary under the right key
    assert EncryptionCanary.objects.get().value == EncryptionCanary.PLAINTEXT
    settings.FIELD_ENCRYPTION_KEY = [new]
    with pytest.raises(DecryptionError) as info:
        start_asgi()
    assert new not in str(info.value) and old not in str(info.value)
    settings.FIELD_ENCRYPTION_KEY = [new, old]  # rotation list: starts again
    assert callable(start_asgi())


@pytest.mark.django_db(transaction=True)
def test_asgi_start_up_inside_an_event_loop_checks_the_key(keys, settings, monkeypatch):
    """uvicorn and hypercorn import the application inside their running event loop."""
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)  # the browser tests' conftest sets it

    async def serve():
        return start_asgi()

    _, new = keys
    assert callable(asyncio.run(serve()))  # not SynchronousOnlyOperation: the right key starts
    assert EncryptionCanary.objects.get().value == EncryptionCanary.PLAINTEXT
    settings.FIELD_ENCRYPTION_KEY = [new]
    with pytest.raises(DecryptionError):
        asyncio.run(serve())


def test_malformed_key_is_refused(settings):
    settings.FIELD_ENCRYPTION_KEY = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured) as info:
        encrypt("x")
    assert "not-a-fernet-key" not in str(info.value)


def test_decrypt_of_garbage_raises():
    with pytest.raises(DecryptionError):
        decrypt("gAAAAAgarbage")


@pytest.mark.django_db
def test_rotate_encryption_key_reencrypts_every_row_under_the_first_key(keys, settings):
    old, new = keys
    EncryptionCanary.objects.create(value=SECRET)
    before = raw_value()
    assert Fernet(old.encode()).decrypt(before.encode()).decode() == SECRET

    settings.FIELD_ENCRYPTION_KEY = [new, old]
    call_command("rotate_encryption_key", stdout=open("/dev/null", "w"))
    after = raw_value()
    assert after != before
    assert Fernet(new.encode()).decrypt(after.encode()).decode() == SECRET

    settings.FIELD_ENCRYPTION_KEY = [new]  # old key dropped: everything still readable
    assert EncryptionCanary.objects.get().value == SECRET


@pytest.mark.django_db
def test_rotate_with_a_missing_old_key_fails_and_changes_nothing(keys, settings):
    _, new = keys
    EncryptionCanary.objects.create(value=SECRET)
    before = raw_value()
    settings.FIELD_ENCRYPTION_KEY = [new]
    with pytest.raises(DecryptionError):
        call_command("rotate_encryption_key", stdout=open("/dev/null", "w"))
    assert raw_value() == before
