from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.models import Membership, Organization, Role, User

DEMO_PASSWORD = "gatehouse-demo-pass"
PEOPLE = [
    ("alice@example.com", "Alice", Role.OWNER),
    ("bob@example.com", "Bob", Role.DEVELOPER),
    ("vera@example.com", "Vera", Role.VIEWER),
]


class Command(BaseCommand):
    help = "Fill an empty database with sample data: an org, three members, an API key. Safe to run twice."

    @transaction.atomic
    def handle(self, *args, **options):
        users = {}
        for email, name, _ in PEOPLE:
            user = User.objects.filter(email=email).first() or User.objects.create_user(
                email, DEMO_PASSWORD, username=name
            )
            users[email] = user
        alice = users["alice@example.com"]
        org = Organization.objects.filter(slug="acme").first() or services.organization_create(
            actor=alice, name="Acme", slug="acme", contact_email="ops@acme.example"
        )
        for email, _, role in PEOPLE:
            if not Membership.objects.filter(user=users[email], organization=org).exists():
                services.membership_add(actor=alice, organization=org, user=users[email], role=role)
        _, raw = services.api_key_create(actor=alice, name="demo agent", scopes=["read", "call", "manage"])
        self.stdout.write(f"Users (password {DEMO_PASSWORD}): " + ", ".join(users))
        self.stdout.write("Organization: acme. API key for alice@example.com:")
        self.stdout.write(raw)
