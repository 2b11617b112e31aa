"""No secret or token reaches a log, whichever library logs it: the site's and the agent's logging configurations are
applied in a process of their own (as in production), each library is made to log secrets, and the console output is
searched for them."""

import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from integrations_site.log_config import MASK, redact
from tests.factories import CLIENT_ID, CLIENT_SECRET, TENANT_ID

ROOT = Path(__file__).resolve().parent.parent
# Test-only values in the shapes that must never be logged. The JWT is {"alg":"none"}.{"sub":"test-only"}.signature.
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0LW9ubHkifQ.dGVzdC1vbmx5LXNpZ25hdHVyZQ"
REFRESH_TOKEN = "test-only-refresh-token-value"
ASSERTION = "test-only-client-assertion-value"
BASIC = "dGVzdC1vbmx5OmJhc2ljLWNyZWRlbnRpYWw="
SECRETS = [CLIENT_SECRET, JWT, JWT.split(".")[1], REFRESH_TOKEN, ASSERTION, BASIC]


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {JWT}",
        f"{{'Authorization': 'Basic {BASIC}', 'Accept': 'application/json'}}",
        f"Proxy-Authorization: Basic {BASIC}\r\nHost: proxy",
        f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&scope=x",
        f"client_assertion_type=jwt-bearer&client_assertion={ASSERTION}",
        f'{{"token_type": "Bearer", "access_token": "{JWT}", "refresh_token": "{REFRESH_TOKEN}"}}',
        f"{{'client_secret': '{CLIENT_SECRET}'}}",
        f"token {JWT} in passing",
        f"https://{CLIENT_ID}:{CLIENT_SECRET}@proxy.corp.example:3128",
        f"bearer {REFRESH_TOKEN}",
    ],
)
def test_each_shape_of_secret_is_masked(text):
    masked = redact(text)
    assert MASK in masked
    assert not [secret for secret in SECRETS if secret in masked], masked


def test_text_without_secrets_is_left_alone():
    line = 'https://127.0.0.1:8443 "GET /api/machines?$filter=startswith(computerDnsName,%27ws-fin-07%27) HTTP/1.1" 200'
    assert redact(line) == line


class TokenServer:
    """Entra ID as a broken gateway would front it: OpenID discovery works, the token comes back form-encoded
    (not JSON), and anything else answers 200."""

    def __init__(self, tmp_path):
        ca = trustme.CA()
        self.ca_pem = ca.cert_pem.bytes().decode()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.endswith("/openid-configuration"):
                    base = f"https://127.0.0.1:{server.port}/{TENANT_ID}"
                    self.reply(
                        "application/json",
                        json.dumps(
                            {
                                "token_endpoint": f"{base}/oauth2/v2.0/token",
                                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                "issuer": f"{base}/v2.0",
                            }
                        ),
                    )
                else:
                    self.reply("text/plain", "fine")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = f"access_token={JWT}&token_type=Bearer&expires_in=3599&refresh_token={REFRESH_TOKEN}"
                self.reply("text/html", body)

            def reply(self, content_type, text):
                payload = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_server(tmp_path):
    server = TokenServer(tmp_path)
    yield server
    server.close()


# Run in a fresh process with the settings module under test: each library logs at DEBUG what it would log, plus
# what it is made to log; the handlers Django's configuration built are then listed with their filters.
PROBE = """
import json, logging, os, django
django.setup()
for name in ("urllib3", "msal", "requests", "django", "django.request"):
    logging.getLogger(name).setLevel(logging.DEBUG)

from defender.services import auth
from defender.services.transport import Transport
from defender.services.connection import ConnectionSettings
from defender.services.errors import DefenderError

values = json.loads(os.environ["PROBE_VALUES"])
settings = ConnectionSettings(
    flavour="mde", host="127.0.0.1", port=values["port"], client_id=values["client_id"],
    client_secret=values["client_secret"], tenant_id=values["tenant_id"],
    auth_url=f"https://127.0.0.1:{values['port']}", ca_certificate=values["ca_pem"],
)
try:
    auth.acquire_token(settings)  # msal: "Token response is not in json format: <the whole body>", at ERROR
except DefenderError as error:
    logging.getLogger("probe").info("token step: %s", error)
query = f"client_secret={values['client_secret']}&access_token={values['jwt']}"
Transport(settings).get(f"https://127.0.0.1:{values['port']}/probe?{query}")  # urllib3: the request line
logging.getLogger("requests").debug("sent headers %r", {"Authorization": "Bearer " + values["jwt"]})
logging.getLogger("msal").debug("form: client_assertion=%s", values["assertion"])
logging.getLogger("urllib3").debug("proxy https://user:%s@proxy:3128", values["client_secret"])

from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.log import log_response

try:
    raise ValueError("Authorization: Basic " + values["basic"] + " client_secret=" + values["client_secret"])
except ValueError as error:
    log_response(
        "Internal Server Error: %s", "/api/x?access_token=" + values["jwt"], response=HttpResponse(status=500),
        request=RequestFactory().get("/api/x"), exception=error,
    )
logging.getLogger("defender").warning("stack", stack_info=True, extra={"note": values["jwt"]})

from integrations_site.log_config import RedactSecrets
loggers = [logging.getLogger()] + [
    logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
]
handlers = {handler for logger in loggers for handler in logger.handlers}
print(json.dumps(sorted(
    f"{type(handler).__name__} ({handler.get_name()})" for handler in handlers
    if not isinstance(handler, logging.NullHandler)  # the libraries' own, which write nothing
    and not any(isinstance(each, RedactSecrets) for each in handler.filters)
)))
"""


@pytest.mark.parametrize("settings_module", ["integrations_site.settings", "integrations_site.agent_settings"])
def test_no_library_logs_a_secret_or_token_through_any_configured_handler(token_server, tmp_path, settings_module):
    values = {
        "port": token_server.port,
        "ca_pem": token_server.ca_pem,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT_ID,
        "jwt": JWT,
        "assertion": ASSERTION,
        "basic": BASIC,
    }
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "LOG_LEVEL": "DEBUG",
        "VAR_DIR": str(tmp_path),
        "PROBE_VALUES": json.dumps(values),
    }
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    log = probe.stderr
    # What each library logged is there, masked ...
    assert "Token response is not in json format" in log
    assert '"GET /probe?client_secret=***&access_token=*** HTTP/1.1" 200' in log
    assert "sent headers {'Authorization': '***'}" in log
    assert "Internal Server Error: /api/x?access_token=***" in log and "Traceback" in log
    assert "Authorization: ***" in log
    # ... and no secret is.
    assert not [secret for secret in SECRETS if secret in log], log
    assert json.loads(probe.stdout) == []
