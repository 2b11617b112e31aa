"""Create an API token for a user and print it once: for the scripts that post executions."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from defender.api import tokens


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (it is stored hashed and cannot be shown again)."

    def add_arguments(self, parser):
        parser.add_argument("user", metavar="USER")
        parser.add_argument("--name", default="Command line", help="what will use the token")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user is named {options['user']!r}.")
        if not user.is_active:
            raise CommandError(f"{user.get_username()} is not active: a token would open nothing.")
        record, token = tokens.issue(user, options["name"])
        self.stderr.write(
            f"Token {record.name!r} for {user.get_username()} (shown once; revoke it on the API tokens page):"
        )
        self.stdout.write(token)
