"""gunicorn's settings (integrations_site/gunicorn.conf.py): threads for the nodes' long poll, counts and the port
from the environment, and an access log that never carries a query string."""

import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

CONFIG = Path(__file__).resolve().parent.parent / "integrations_site" / "gunicorn.conf.py"
LONG_POLL_SECONDS = 25


def loaded(monkeypatch, **environment):
    for name in ("PORT", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def test_threads_serve_the_long_poll_and_the_defaults_suit_two_cores(monkeypatch):
    config = loaded(monkeypatch)

    assert config["worker_class"] == "gthread"
    assert (config["workers"], config["threads"]) == (2, 8)
    assert config["timeout"] > LONG_POLL_SECONDS
    assert config["bind"] == ["0.0.0.0:8000"]


def test_counts_and_the_port_come_from_the_environment(monkeypatch):
    config = loaded(monkeypatch, PORT="5000", WEB_CONCURRENCY="3", GUNICORN_THREADS="16", GUNICORN_TIMEOUT="90")

    assert (config["workers"], config["threads"], config["timeout"], config["bind"]) == (3, 16, 90, ["0.0.0.0:5000"])
    assert loaded(monkeypatch, PORT="5000", BIND="127.0.0.1:9000")["bind"] == ["127.0.0.1:9000"]


def test_a_count_below_one_stops_start_up(monkeypatch):
    with pytest.raises(ValueError, match="WEB_CONCURRENCY must be at least 1"):
        loaded(monkeypatch, WEB_CONCURRENCY="0")


def test_the_access_log_names_the_path_but_never_the_query_string_or_referer(monkeypatch):
    config = loaded(monkeypatch)
    secret = "client_secret=s3cr3t-in-a-query"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/settings/integrations/?{secret}",
        "PATH_INFO": "/settings/integrations/",
        "QUERY_STRING": secret,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.7",
        "HTTP_REFERER": f"https://director.example.com/?{secret}",
        "HTTP_USER_AGENT": "Mozilla/5.0",
    }
    response = SimpleNamespace(status="200 OK", sent=512, headers=[])
    atoms = Logger(Config()).atoms(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=42))

    line = config["access_log_format"] % atoms

    assert '"GET /settings/integrations/ HTTP/1.1" 200 512 42ms "Mozilla/5.0"' in line
    assert "s3cr3t" not in line and "?" not in line
