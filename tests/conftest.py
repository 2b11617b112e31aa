"""Shared fixtures: users of each kind and clients logged in as them."""

import pytest
from django.contrib.auth.models import Group

from defender.roles import ADMINISTRATORS, VIEWERS

pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.simulator",
    "tests.fixtures.proxy",
    "tests.fixtures.tls_front",
    "tests.fixtures.capture",
]

PASSWORD = "correct horse battery staple"


def _user_in(django_user_model, username, group_name):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def admin_user(db, django_user_model):
    """An administrator by group membership (not a superuser), so permission checks are really exercised."""
    return _user_in(django_user_model, "alice-admin", ADMINISTRATORS)


@pytest.fixture
def viewer_user(db, django_user_model):
    return _user_in(django_user_model, "victor-viewer", VIEWERS)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def viewer_client(client, viewer_user):
    client.force_login(viewer_user)
    return client
