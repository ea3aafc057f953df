from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import ALL_SCOPES, User


class Command(BaseCommand):
    help = "Create an API key for a user. The key is printed as the last line, and only here."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scopes", default=",".join(ALL_SCOPES), help="Comma-separated: read,call,manage")

    def handle(self, *args, email, name, scopes, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}.")
        try:
            key, raw = services.api_key_create(actor=user, name=name, scopes=scopes)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(f"Created key {key.name} ({key.prefix}…) with scopes {', '.join(key.scopes)}.")
        self.stdout.write(raw)
