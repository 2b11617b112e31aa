"""Create the demo administrator once, printing its password that one time; later runs keep the user as it is."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from defender.roles import ADMINISTRATORS


class Command(BaseCommand):
    help = "Create the demo administrator (printing its password once) unless it exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"Demo administrator '{username}' already exists; its password was printed when it was made."
            )
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        user.groups.add(Group.objects.get(name=ADMINISTRATORS))
        self.stdout.write(self.style.SUCCESS("Demo administrator created. Log in with:"))
        self.stdout.write(f"  user name: {username}\n  password:  {password}")
