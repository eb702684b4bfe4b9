"""Create a bearer token for the JSON API; it is printed once and only its hash is stored."""
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from personas.api import hash_token
from personas.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USER, labelled NAME; prints it once."

    def add_arguments(self, parser):
        parser.add_argument("user")
        parser.add_argument("name")

    def handle(self, *args, user, name, **options):
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {user!r}.") from None
        key = secrets.token_urlsafe(32)
        ApiToken.objects.create(user=owner, name=name, key_hash=hash_token(key))
        self.stdout.write(key)
