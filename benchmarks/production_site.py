"""The site as production runs it, for the engine benchmarks: gunicorn with integrations_site/gunicorn.conf.py and a
Celery worker on the embedded broker (kombu's filesystem transport, so that nothing but Python is needed), DEBUG
off, a throwaway SQLite database and static files collected into a temporary folder, and the simulator (in this
process, so that its faults can be switched) seeded as the demo seeds it.

gunicorn serves HTTPS itself, with a certificate of a throwaway CA: with DEBUG off the session and CSRF cookies are
Secure, and a client keeps them for HTTPS only.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "benchmark-only-password"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _configure(folder, port):
    from cryptography.fernet import Fernet

    environment = {
        "DJANGO_SETTINGS_MODULE": "integrations_site.settings",
        "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
        "VAR_DIR": str(folder / "var"),
        "STATIC_ROOT": str(folder / "static"),
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-" + "x" * 40,
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_LOG_LEVEL": "warning",
        "BIND": f"127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    environment.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.update(environment)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # As the suite does: readers go on while the worker writes.
    with sqlite3.connect(folder / "bench.sqlite3") as database:
        database.execute("PRAGMA journal_mode=WAL")
    call_command("collectstatic", interactive=False, verbosity=0)


def _users():
    from django.contrib.auth.models import Group, User

    from defender.roles import ADMINISTRATORS

    for name in ("asker", "reader"):
        user = User.objects.create_user(name, password=PASSWORD)
        user.groups.add(Group.objects.get(name=ADMINISTRATORS))


def _start(name, command, folder):
    log = (folder / f"{name}.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def log_in(url, username):
    """A requests session signed in through the login form, as a browser signs in."""
    session = requests.Session()
    session.verify = os.environ["BENCHMARK_SITE_CA"]
    session.trust_env = False  # loopback: no proxy, and no CA bundle from the environment in place of the site's
    page = session.get(f"{url}/accounts/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    answer = session.post(
        f"{url}/accounts/login/",
        {"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=30,
    )
    answer.raise_for_status()
    assert "/accounts/login/" not in answer.url, "the benchmark user could not log in"
    return session


def csrf_token(session, url):
    page = session.get(url, timeout=30).text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@contextmanager
def production_site(worker_concurrency=4):
    """(site URL, simulator, the demo integration) while gunicorn and a worker run; all stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as name:
        folder = Path(name)
        port = _free_port()
        _configure(folder, port)
        from defender.demo import seed_demo
        from defender.operations import engine
        from defender.simulator import Simulator

        simulator = Simulator(seed=1, ca_path=folder / "simulator-ca.pem").start()
        integration = seed_demo(simulator)
        _users()
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(folder / "site-ca.pem"))
        os.environ["BENCHMARK_SITE_CA"] = str(folder / "site-ca.pem")
        issued = ca.issue_cert("127.0.0.1")
        issued.cert_chain_pems[0].write_to_path(str(folder / "site.pem"))
        issued.private_key_pem.write_to_path(str(folder / "site.key"))
        gunicorn = [sys.executable, "-m", "gunicorn", "integrations_site.wsgi"]
        gunicorn += ["--config", "integrations_site/gunicorn.conf.py"]
        gunicorn += ["--certfile", str(folder / "site.pem"), "--keyfile", str(folder / "site.key")]
        worker = [sys.executable, "-m", "celery", "-A", "integrations_site", "worker", "--loglevel", "WARNING"]
        worker += ["--concurrency", str(worker_concurrency), "--without-gossip", "--without-mingle"]
        processes = [_start("gunicorn", gunicorn, folder), _start("worker", worker, folder)]
        url = f"https://127.0.0.1:{port}"
        try:
            give_up = time.monotonic() + 120
            while not engine.online_workers().exists() or not _answers(url):
                if time.monotonic() > give_up:
                    logs = "\n".join((folder / f"{n}.log").read_text() for n in ("gunicorn", "worker"))
                    raise SystemExit(f"The site or its worker did not start:\n{logs}")
                time.sleep(0.2)
            yield url, simulator, integration
        except BaseException:
            for name in ("gunicorn", "worker"):
                print(f"----- {name} -----\n" + (folder / f"{name}.log").read_text()[-5000:], file=sys.stderr)
            raise
        finally:
            for process in processes:
                _stop(process)
            simulator.stop()


def _answers(url):
    try:
        answer = requests.get(f"{url}/accounts/login/", timeout=5, verify=os.environ["BENCHMARK_SITE_CA"])
        return answer.status_code == 200
    except requests.RequestException:
        return False
