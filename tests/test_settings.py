import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from integrations_site import env

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p" * 10 + "production-secret-key-for-the-check-deploy-test-only-0123456789",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "director.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://director.example.com",
}


def run_manage(*args, extra_env, tmp_path, umask=0o022):
    # A clean environment: none of the production variables, not the suite's database (the development default
    # applies), and not the browser tests' async-unsafe switch. A usual umask, which would make files world-readable.
    inherited = set(PRODUCTION) | {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL"}
    environment = {key: value for key, value in os.environ.items() if key not in inherited}
    environment.update({"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "integrations_site.settings"})
    environment.update(extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        umask=umask,
    )


# Run in the fresh process: GET each path through the whole middleware stack, as a request from outside would be.
GET_PATHS = """
import json, os
from django.test import Client
client = Client(HTTP_HOST="director.example.com", **json.loads(os.environ["TEST_HEADERS"]))
answers = []
for path in json.loads(os.environ["TEST_PATHS"]):
    response = client.get(path)
    answers.append({"status": response.status_code, "location": response.get("Location", ""),
                    "body": response.content.decode()})
print(json.dumps(answers))
"""


def get_in_a_fresh_process(paths, extra_env, tmp_path, **headers):
    """The answers to GETs of ``paths`` (status, Location, body) from a process started with ``extra_env``."""
    requests = {"TEST_PATHS": json.dumps(paths), "TEST_HEADERS": json.dumps(headers)}
    result = run_manage("shell", "-c", GET_PATHS, extra_env={**extra_env, **requests}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_keys_and_says_how_to_make_one(missing, tmp_path):
    settings = {key: value for key, value in PRODUCTION.items() if key != missing}
    result = run_manage("check", extra_env=settings, tmp_path=tmp_path)
    assert result.returncode != 0
    assert f"{missing} is not set and DEBUG is off" in result.stderr
    assert "generated with: python -c" in result.stderr
    assert not (tmp_path / "dev-secrets.json").exists()


def test_check_deploy_with_production_settings_reports_no_warnings(tmp_path):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", extra_env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_development_defaults_need_no_settings_and_generate_keys_once(tmp_path):
    first = run_manage("check", extra_env={}, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generated development keys" in first.stderr
    second = run_manage("check", extra_env={}, tmp_path=tmp_path)
    assert "generated development keys" not in second.stderr


def test_a_malformed_debug_value_stops_start_up(tmp_path):
    result = run_manage("check", extra_env={"DEBUG": "ture"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'ture'" in result.stderr


@pytest.mark.parametrize("spelling", ["true", "True", "1", "yes", "on"])
def test_true_spellings(spelling):
    assert env.boolean("FLAG", default=False, environ={"FLAG": spelling}) is True


@pytest.mark.parametrize("spelling", ["false", "FALSE", "0", "no", "off"])
def test_false_spellings(spelling):
    assert env.boolean("FLAG", default=True, environ={"FLAG": spelling}) is False


@pytest.mark.parametrize("spelling", ["ture", "y", "enabled", "2"])
def test_other_boolean_spellings_are_refused(spelling):
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        env.boolean("FLAG", default=True, environ={"FLAG": spelling})


def test_a_value_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    assert env.read("SECRET_KEY", environ={"SECRET_KEY_FILE": str(secret_file)}) == "from-a-file"


def test_a_missing_file_names_the_variable(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE points to"):
        env.read("SECRET_KEY", environ={"SECRET_KEY_FILE": str(tmp_path / "absent")})


def test_value_and_file_together_are_refused(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="either SECRET_KEY or SECRET_KEY_FILE"):
        env.read("SECRET_KEY", environ={"SECRET_KEY": "a", "SECRET_KEY_FILE": "b"})


def test_production_database_comes_from_database_url(tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])",
        extra_env={**PRODUCTION, "DATABASE_URL": "postgres://someone@db.example:5432/director"},
        tmp_path=tmp_path,
    )
    assert "django.db.backends.postgresql" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgres://someone@db.example:5432/director", "-c jit=off"),
        ("postgres://someone@db.example:5432/director?options=-c%20statement_timeout%3D5000", None),
        ("postgres://someone@db.example:5432/director?options=-c%20jit%3Don", "-c jit=on"),
    ],
)
def test_postgresql_compiles_no_query_to_machine_code_unless_database_url_says_so(url, options, tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'].get('options'))",
        extra_env={**PRODUCTION, "DATABASE_URL": url},
        tmp_path=tmp_path,
    )
    assert result.stdout.splitlines()[-1] == (options or "-c statement_timeout=5000 -c jit=off"), result.stderr


@pytest.mark.django_db
def test_the_suites_postgresql_connections_run_without_jit():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("JIT compiling is PostgreSQL's; this database is SQLite.")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_the_development_database_and_keys_are_created_readable_by_their_owner_only(tmp_path):
    var = tmp_path / "var"
    result = run_manage("migrate", "--noinput", extra_env={}, tmp_path=var)
    assert result.returncode == 0, result.stderr

    assert mode(var) == 0o700
    assert mode(var / "dev-secrets.json") == 0o600
    assert mode(var / "db.sqlite3") == 0o600


def test_files_made_before_are_made_private_at_the_next_start(tmp_path):
    first = run_manage("migrate", "--noinput", extra_env={}, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    for path in (tmp_path, tmp_path / "dev-secrets.json", tmp_path / "db.sqlite3"):
        path.chmod(0o755 if path.is_dir() else 0o644)

    again = run_manage("migrate", "--noinput", extra_env={}, tmp_path=tmp_path)

    assert again.returncode == 0, again.stderr
    assert (mode(tmp_path), mode(tmp_path / "dev-secrets.json"), mode(tmp_path / "db.sqlite3")) == (0o700, 0o600, 0o600)


def test_login_lockout_and_idle_timeout_come_from_the_environment(tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.SESSION_COOKIE_AGE, s.TRUSTED_PROXY_COUNT, "
        "s.ALLOW_METADATA_HOSTS)",
        extra_env={
            "LOGIN_FAILURE_LIMIT": "3",
            "LOGIN_COOLOFF_MINUTES": "30",
            "SESSION_IDLE_TIMEOUT": "900",
            "TRUSTED_PROXY_COUNT": "1",
            "ALLOW_METADATA_HOSTS": "true",
        },
        tmp_path=tmp_path,
    )
    assert result.stdout.splitlines()[-1].split() == ["3", "1800.0", "900", "1", "True"], result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOGIN_FAILURE_LIMIT", "0", "LOGIN_FAILURE_LIMIT must be at least 1, not 0."),
        ("LOGIN_COOLOFF_MINUTES", "0", "LOGIN_COOLOFF_MINUTES must be at least 1, not 0."),
        ("SESSION_IDLE_TIMEOUT", "5", "SESSION_IDLE_TIMEOUT must be at least 60, not 5."),
    ],
)
def test_a_setting_out_of_range_stops_start_up(tmp_path, variable, value, message):
    result = run_manage("check", extra_env={variable: value}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory):
    """A production process renders its pages from the static files collectstatic gathered (hashed names)."""
    folder = tmp_path_factory.mktemp("static")
    extra = {**PRODUCTION, "STATIC_ROOT": str(folder)}
    result = run_manage("collectstatic", "--noinput", extra_env=extra, tmp_path=tmp_path_factory.mktemp("var"))
    assert result.returncode == 0, result.stderr
    return str(folder)


@pytest.mark.parametrize(
    ("trusted", "expected_status"),
    [("false", 301), ("true", 200)],
    ids=["from-anyone-not-believed", "from-a-trusted-proxy-believed"],
)
def test_x_forwarded_proto_makes_a_request_secure_only_when_a_trusted_proxy_is_said_to_set_it(
    trusted, expected_status, collected_static, tmp_path
):
    """With DEBUG off, plain HTTP is redirected to HTTPS. A client that merely says it came over https is redirected
    all the same, unless the operator has said the proxy in front sets the header."""
    environment = {**PRODUCTION, "TRUSTED_PROXY_SETS_X_FORWARDED_PROTO": trusted, "STATIC_ROOT": collected_static}
    (login,) = get_in_a_fresh_process(["/accounts/login/"], environment, tmp_path, HTTP_X_FORWARDED_PROTO="https")
    assert login["status"] == expected_status
    if expected_status == 301:
        assert login["location"] == "https://director.example.com/accounts/login/"


def test_x_forwarded_proto_is_not_believed_by_default(tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)",
        extra_env=PRODUCTION,
        tmp_path=tmp_path,
    )
    assert result.stdout.strip().splitlines()[-1] == "None", result.stderr
