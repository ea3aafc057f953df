from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import services
from accounts.models import Membership, Organization, Role, User


class Command(BaseCommand):
    help = "Create (or update) a user, optionally as a member of an org (created if missing)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--password", help="Leave out for a user who cannot log in with a password.")
        parser.add_argument("--name", default="", help="Display name.")
        parser.add_argument("--org", help="Organization slug; created if it does not exist.")
        parser.add_argument("--role", default=Role.DEVELOPER, choices=Role.values)
        parser.add_argument("--staff", action="store_true", help="May log in to the Django admin.")
        parser.add_argument("--superuser", action="store_true", help="Sees and manages everything.")

    @transaction.atomic
    def handle(self, *args, email, password, name, org, role, staff, superuser, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email, password, username=name)
            self.stdout.write(f"Created user {user.email}.")
        elif password:
            user.set_password(password)
            self.stdout.write(f"Updated password of {user.email}.")
        user.is_staff = user.is_staff or staff or superuser
        user.is_superuser = user.is_superuser or superuser
        user.save()
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                try:
                    organization = services.organization_create(actor=user, name=org, slug=org)
                except ValidationError as exc:
                    raise CommandError("; ".join(exc.messages)) from None
                # The first member of a new org is its owner: an org always has one.
                self.stdout.write(f"Created organization {organization.slug} with {user.email} as owner.")
                return
            membership = Membership.objects.filter(user=user, organization=organization).first()
            if membership is None:
                services.membership_add(actor=None, organization=organization, user=user, role=role)
            elif membership.role != role:
                services.membership_change_role(actor=None, membership=membership, role=role)
            self.stdout.write(f"{user.email} is {role} of {organization.slug}.")
