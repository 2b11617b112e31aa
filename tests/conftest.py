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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite, a test database in a file instead of in memory.

    An in-memory database is one connection, which Django hands to the live server's threads as well: the site's
    requests and the test's own queries then share one transaction, so a test sees a node's answer before it is
    committed and its reads collide with the site's writes ("database table is locked"). In a file, every thread
    has its own connection, as with PostgreSQL; WAL lets readers go on while one writes.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")
        database.setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"


@pytest.fixture(scope="session", autouse=True)
def static_files_as_found(tmp_path_factory):
    """Django's plain static storage, not the site's manifest: with DEBUG off (as pytest-django runs), the manifest
    storage refuses to name a file until collectstatic has written its manifest, and the suite must not need a
    collectstatic before each run. Pages then link /static/css/... by its plain name, found by the finders. An empty
    STATIC_ROOT, so that whitenoise finds the folder it serves. (The production test runs collectstatic and the
    manifest storage for real.)"""
    from django.test import override_settings

    plain = override_settings(
        STATIC_ROOT=tmp_path_factory.mktemp("static_root"),
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    )
    plain.enable()
    yield
    plain.disable()


@pytest.fixture(scope="session", autouse=True)
def celery_in_memory():
    """The suite's own Celery broker lives in memory: tasks queued by a test never reach the machine's Redis or the
    demo's queue folder. (The tests of real workers start them on Redis with a database number of their own.)"""
    from integrations_site.celery import app

    app.conf.broker_url = "memory://"
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    return app


@pytest.fixture(autouse=True)
def fresh_call_budget():
    """Each test starts with an unused call budget counted in this process: one test's calls (or a 429's pause) never
    spend the next one's. The process tests share Redis instead and flush their database themselves."""
    from defender.services import budget

    before = budget.backend()
    budget.use(budget.InProcess())
    yield
    budget.use(before)


@pytest.fixture(autouse=True)
def tasks_inline(request, settings):
    """A task finishes before the view that queued it returns, in tests that run inside one transaction (a worker
    would not see their rows); against a live server a worker runs them, as on the site."""
    settings.TASKS_RUN_INLINE = "live_server" not in request.fixturenames
    if settings.TASKS_RUN_INLINE:
        yield
        return
    yield from _worker(request)


@pytest.fixture
def evaluation_left_to_a_worker(tasks_inline, settings):
    """An import queues its outcome evaluation for a worker, which these tests leave queued: they look at what was
    stored, and the engine's own tests evaluate."""
    settings.TASKS_RUN_INLINE = False


def _worker(request):
    """A real Celery worker (threads, in this process, so that it uses the test database) for a live-server test."""
    from celery.contrib.testing.worker import start_worker

    app = request.getfixturevalue("celery_in_memory")
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30):
        yield


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
