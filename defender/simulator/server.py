"""The Simulator: one HTTPS port serving Entra ID, the Defender for Endpoint API and Graph alerts_v2, routed by path,
and a second HTTPS port (same CA) for the legacy SIEM exporter, which Microsoft serves on hosts of its own
(wdatp-alertexporter-*.windows.com) with error bodies of its own.
"""

import logging
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import trustme

from . import scopes
from .defender_api import DefenderAPI
from .defender_api import error as defender_error
from .entra import Entra
from .entra import error as entra_error
from .faults import Faults, hostile_alert
from .graph_api import GraphAPI
from .graph_api import error as graph_error
from .graph_api import throttled as graph_throttled
from .hunting import hunting_reply
from .reply import Reply
from .seed import ACTOR_HOSTNAMES, BULK_MACHINE, SeedData, UnknownMachine, jsonable
from .siem_api import SiemAPI
from .siem_api import error as siem_error
from .tokens import InvalidToken, TokenSigner
from .transport import SimulatorHTTPServer

logger = logging.getLogger("defender.simulator")

REQUEST_LOG_SIZE = 10000
CONTROL_PREFIX = "/_simulator/"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it. The Authorization header and request bodies are never kept."""

    time: float
    method: str
    path: str
    query: str
    client_host: str
    client_port: int
    user_agent: str
    status: int
    kind: str  # "token", "discovery", "api" or "control"
    prefer: str = ""  # the Prefer header (Graph's include-unknown-enum-members)


def _held(detections_of, alert_id, index):
    """Whether a detection is one of a hostile SIEM alert's other detections (held back)."""
    return isinstance(alert_id, str) and detections_of.get(alert_id, index) != index


REDACTED_PARAMETERS = ("client_secret", "access_token", "client_assertion")


def _redacted(query):
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in REDACTED_PARAMETERS for name, _ in pairs):
        return query
    return urlencode([(n, "***" if n.lower() in REDACTED_PARAMETERS else v) for n, v in pairs])


class Simulator:
    """Entra ID and the Defender, Graph and SIEM alert APIs over real HTTPS on 127.0.0.1.

    Build it, `start()` it (or use it as a context manager), point clients at `base_url`/`auth_url` with
    `verify=ca_path`, and use `faults` to make it misbehave. Extra keyword arguments are the run's fault switches.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        seed=1,
        alerts_on_bulk_machine=0,
        port=0,
        siem_port=0,
        ca_path=None,
        page_size=1000,
        token_lifetime=3599,
        **faults,
    ):
        self.seed = seed
        self.port = port
        self.siem_port = siem_port
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.faults = Faults(**faults)
        self.data = SeedData(seed, alerts_on_bulk_machine)
        self.alerts_on_bulk_machine = alerts_on_bulk_machine
        self.signer = TokenSigner()
        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem = self._ca.cert_pem.bytes().decode("ascii")
        if ca_path is None:
            own_dir = tempfile.mkdtemp(prefix="defender-simulator-")
            weakref.finalize(self, shutil.rmtree, own_dir, ignore_errors=True)
            ca_path = Path(own_dir) / "simulator-ca.pem"
        self.ca_path = str(ca_path)
        # The demo app's private key and certificate, for an integration that signs in with a certificate.
        self.certificate_path = str(Path(ca_path).with_name("simulator-app-certificate.pem"))
        self._entra = Entra(self)
        self._defender = DefenderAPI(self)
        self._graph = GraphAPI(self)
        self._siem = SiemAPI(self)
        self._lock = threading.Lock()
        self._log = deque(maxlen=REQUEST_LOG_SIZE)
        self._token_requests = Counter()
        self._token_requests_by_app = Counter()
        self._api_calls = 0
        self._server = self._siem_server = None
        self._thread = self._siem_thread = None
        self._machines_view = self._alerts_view = None
        self._held_alerts = []  # raised by procedure_ran, not yet reported

    # Lifecycle

    def start(self):
        Path(self.ca_path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.ca_path).write_text(self.ca_pem)
        certificate = Path(self.certificate_path)
        certificate.touch(mode=0o600, exist_ok=True)
        certificate.chmod(0o600)  # a private key, if only the simulator's
        certificate.write_text(self.app.certificate_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        self._server = SimulatorHTTPServer((self.host, self.port), context, self)
        try:
            self._siem_server = SimulatorHTTPServer((self.siem_host, self.siem_port), context, _SiemListener(self))
        except OSError:
            self._server.server_close()
            self._server = None
            raise
        self.port = self._server.server_address[1]
        self.siem_port = self._siem_server.server_address[1]
        self._thread = self._serve(self._server, "defender-simulator")
        self._siem_thread = self._serve(self._siem_server, "defender-simulator-siem")
        logger.info("Defender simulator listening on %s (SIEM exporter on %s)", self.base_url, self.siem_base_url)
        return self

    @staticmethod
    def _serve(server, name):
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self):
        if self._server is None:
            return
        for server, thread in ((self._server, self._thread), (self._siem_server, self._siem_thread)):
            server.shutdown()
            server.close_open_connections()
            server.server_close()
            thread.join(timeout=5)
        self._server = self._thread = self._siem_server = self._siem_thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # What clients need

    @property
    def base_url(self):
        return f"https://{self.host}:{self.port}"

    @property
    def siem_host(self):
        """The SIEM exporter's host: the same address, a listener of its own (its own port)."""
        return self.host

    @property
    def siem_base_url(self):
        return f"https://{self.siem_host}:{self.siem_port}"

    @property
    def auth_url(self):
        """The authority's host part; clients append the tenant, as with https://login.microsoftonline.com."""
        return self.base_url

    @property
    def tenant_id(self):
        return self.data.tenant_id

    @property
    def tenant_domain(self):
        return self.data.tenant_domain

    @property
    def app(self):
        """Alert.Read.All, Machine.Read.All and SecurityAlert.Read.All: everything the three API flavours need."""
        return self.data.apps["app"]

    @property
    def app_without_machine_role(self):
        return self.data.apps["app_without_machine_role"]

    @property
    def app_without_roles(self):
        return self.data.apps["app_without_roles"]

    @property
    def app_without_hunting(self):
        """An app with the alert and machine roles but neither AdvancedQuery.Read.All nor ThreatHunting.Read.All."""
        return self.data.apps["app_without_hunting"]

    @property
    def app_expired_secret(self):
        return self.data.apps["app_expired_secret"]

    @property
    def machines(self):
        if self._machines_view is None:
            self._machines_view = [jsonable(machine) for machine in self.data.machines]
        return self._machines_view

    @property
    def alerts(self):
        """The seed alerts as the Defender API sends them with $expand=evidence, oldest first."""
        if self._alerts_view is None:
            self._alerts_view = [DefenderAPI.render(alert, True) for alert in self.data.alerts]
        return self._alerts_view

    @property
    def bulk_hostname(self):
        """The short name of the machine that carries `alerts_on_bulk_machine` alerts."""
        return BULK_MACHINE.partition(".")[0]

    def actor_hostnames(self):
        """(hostname, alternate hostname or "") pairs of actors whose machines have alerts.

        One is a short name while Defender holds the FQDN; one is found only through its alternate hostname.
        """
        pairs = list(ACTOR_HOSTNAMES)
        if self.alerts_on_bulk_machine:
            pairs.append((self.bulk_hostname, ""))
        return pairs

    def seed_fleet(self, alerts, machines, hours=12):
        """Seed ``alerts`` alerts over ``machines`` new machines (fleet-NNN.corp.contoso.com), updated within the past
        ``hours``; returns the machines' names. For sweeps and their benchmark."""
        names = self.data.seed_fleet(alerts, machines, hours)
        self._reindex()
        return names

    def update_alert(self, alert_id, when=None):
        """Change one alert, as Defender does when a detection merges into it: its lastUpdateTime becomes ``when``
        (default now). Returns the alert as the API now sends it."""
        alert = self.data.update_alert(alert_id, (when or datetime.now(UTC)).astimezone(UTC))
        self._reindex([alert_id])
        return DefenderAPI.render(alert, True)

    def procedure_ran(
        self,
        machine_name,
        technique_id,
        command,
        started,
        stopped=None,
        response="alerted",
        file_name="",
        delay=timedelta(0),
    ):
        """Tell the simulator an attack procedure ran on a machine and how Defender responded (prevented, alerted,
        detected or missed). The alert it raises is created ``delay`` after the procedure stopped and, like
        Defender's, is not served before that moment; then it is served like any other. Returns the alert's ID, or
        None."""
        stopped = stopped or started
        alert = self.data.procedure_ran(
            machine_name,
            technique_id,
            command,
            started.astimezone(UTC),
            stopped.astimezone(UTC),
            response,
            file_name,
            delay,
        )
        if alert is None:
            return None
        with self._lock:
            self._held_alerts.append(alert)
        self._release_due_alerts()
        return alert["id"]

    def _release_due_alerts(self):
        """Store the held alerts whose creation time has come (checked before every request is answered)."""
        if not self._held_alerts:
            return
        now = datetime.now(UTC)
        with self._lock:
            due = [alert for alert in self._held_alerts if alert["alertCreationTime"] <= now]
            self._held_alerts = [alert for alert in self._held_alerts if alert["alertCreationTime"] > now]
        for alert in due:
            self.data.add_alert(alert)
        if due:
            self._reindex([alert["id"] for alert in due])

    def _reindex(self, changed_alert_ids=()):
        self._defender.reindex(changed_alert_ids)
        for api in (self._graph, self._siem):
            api.machines = {machine["id"]: machine for machine in self.data.machines}
        self._machines_view = self._alerts_view = None

    # Observability

    @property
    def requests(self):
        with self._lock:
            return list(self._log)

    @property
    def token_requests(self):
        with self._lock:
            return sum(self._token_requests.values())

    @property
    def token_requests_by_app(self):
        with self._lock:
            return dict(self._token_requests_by_app)

    @property
    def token_requests_by_endpoint(self):
        """Token requests per endpoint: "v2.0" (/oauth2/v2.0/token) and "v1" (/oauth2/token)."""
        with self._lock:
            return dict(self._token_requests)

    @property
    def api_calls(self):
        with self._lock:
            return self._api_calls

    def reset_counters(self):
        with self._lock:
            self._log.clear()
            self._token_requests.clear()
            self._token_requests_by_app.clear()
            self._api_calls = 0

    def counters(self):
        return {
            "token_requests": self.token_requests,
            "token_requests_by_app": self.token_requests_by_app,
            "token_requests_by_endpoint": self.token_requests_by_endpoint,
            "api_calls": self.api_calls,
        }

    # Serving

    def handle(self, request, siem=False):
        """Answer one request (``siem``: one that came to the SIEM exporter's listener); called on the connection's
        thread."""
        kind, reply = "api", None
        try:
            self._release_due_alerts()
            kind, route = self.classify_siem(request) if siem else self.classify(request)
            reply = self.with_faults(request, kind, route, siem) if kind in ("api", "token") else route()
        except Exception:
            logger.exception("simulator failed on %s %s", request.method, request.path)
            if siem:
                reply = siem_error(500, "An error occurred in the service.")
            else:
                reply = defender_error(request, 500, "InternalServerError", "An unexpected error occurred.")
        finally:
            record = RequestRecord(
                time=time.time(),
                method=request.method,
                path=request.path,
                query=_redacted(request.query),
                client_host=request.client[0],
                client_port=request.client[1],
                user_agent=request.headers.get("User-Agent", ""),
                status=reply.status if reply else 500,
                kind=kind,
                prefer=request.headers.get("Prefer", ""),
            )
            with self._lock:
                self._log.append(record)
        return reply

    def classify(self, request):
        """(kind, a callable giving the reply) for a request, by path."""
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        lowered = [part.lower() for part in parts]
        if path.startswith(CONTROL_PREFIX):
            return "control", lambda: self.control(request, lowered[1:])
        if request.method == "GET" and lowered[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return "discovery", lambda: self._entra.openid_configuration(request, parts[0], "2.0")
        if request.method == "GET" and lowered[1:] == [".well-known", "openid-configuration"]:
            return "discovery", lambda: self._entra.openid_configuration(request, parts[0], "1.0")
        if request.method == "GET" and lowered[1:] in (["discovery", "v2.0", "keys"], ["discovery", "keys"]):
            return "discovery", lambda: self._entra.keys(request, parts[0])
        if lowered[1:] in (["oauth2", "v2.0", "token"], ["oauth2", "token"]):
            version = "2.0" if lowered[2] == "v2.0" else "1.0"
            return "token", lambda: self.token(request, parts[0], version)
        if lowered[0] == "api":
            route = parts[2:] if lowered[1:2] == ["v1.0"] else parts[1:]
            return "api", lambda: self.api(request, route)
        if lowered[:1] in (["v1.0"], ["beta"]) and lowered[1:] in (
            ["security", "alerts_v2"],
            ["security", "runhuntingquery"],
        ):
            return "api", lambda: self.graph(request, lowered[0])
        return "api", lambda: defender_error(request, 404, "NotFound", f"The requested resource {path} was not found.")

    def classify_siem(self, request):
        """The SIEM exporter's host serves GET /api/alerts alone; Entra ID stays on the main listener."""
        if request.path.rstrip("/").lower() == "/api/alerts":
            return "api", lambda: self.siem(request)
        return "api", lambda: siem_error(
            404,
            "The resource you are looking for has been removed, had its name changed, or is temporarily unavailable.",
        )

    def with_faults(self, request, kind, route, siem=False):
        if kind == "api":
            with self._lock:
                self._api_calls += 1
        decision = self.faults.decide(kind)
        if decision.delay:
            time.sleep(decision.delay)
        if decision.status and siem:
            reply = self.siem_fault_reply(decision)
        else:
            reply = self.fault_reply(request, kind, decision) if decision.status else route()
        if decision.malformed or (reply.status == 200 and self.faults.malformed_page(reply.page)):
            reply.malformed = True
        if kind == "api" and reply.status == 200:
            self.make_hostile(request, reply)
        return reply

    def make_hostile(self, request, reply):
        """Serve the first alerts of an alert listing (MDE, Graph or SIEM) as the hostile_alerts switch says."""
        hostile = self.faults.hostile_alerts()
        if hostile is None or not request.path.rstrip("/").lower().endswith(("/alerts", "/alerts_v2")):
            return
        specs, machine_name = hostile
        items = reply.body.get("value") if isinstance(reply.body, dict) else reply.body
        if not isinstance(items, list):
            return
        on_machine = self.alert_ids_on(machine_name) if machine_name else None
        changed, detections_of = 0, {}
        for index, item in enumerate(items):
            if changed == len(specs):
                break
            siem_id = item.get("AlertId") if isinstance(item, dict) else None
            if siem_id in detections_of:
                continue
            if on_machine is None or (item.get("id") or siem_id) in on_machine:
                items[index] = hostile_alert(item, specs[changed])
                changed += 1
                if siem_id:
                    detections_of[siem_id] = index
        if detections_of:
            # A SIEM alert is its detections: a hostile one is served as its first detection alone.
            items[:] = [
                item
                for index, item in enumerate(items)
                if not (isinstance(item, dict) and _held(detections_of, item.get("AlertId"), index))
            ]

    def alert_ids_on(self, machine_name):
        """The IDs of the seed alerts raised on the machine of that name (short or full, any case)."""
        wanted = machine_name.lower()
        machine_ids = {
            machine["id"]
            for machine in self.data.machines
            if wanted in (machine["computerDnsName"].lower(), machine["computerDnsName"].lower().partition(".")[0])
        }
        return {alert["id"] for alert in self.data.alerts if alert["machineId"] in machine_ids}

    def fault_reply(self, request, kind, decision):
        headers = {"Retry-After": decision.retry_after} if decision.retry_after else {}
        if kind == "token":
            if decision.status == 429 and self.faults.token_429_without_body():
                return Reply(429, "Too Many Requests", {"Retry-After": str(decision.retry_after or 60)})
            if decision.status == 429:
                reply = entra_error(
                    429, "temporarily_unavailable", 50196, "The server is busy.", request.correlation_id
                )
            else:
                reply = entra_error(
                    decision.status,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                    request.correlation_id,
                )
            reply.headers.update(headers)
            return reply
        graph = request.path.lower().startswith(("/v1.0/", "/beta/"))
        make_error = graph_error if graph else defender_error
        if decision.status == 429 and graph:
            return graph_throttled(request, headers)
        if decision.status == 429:
            message = f"Rate limit is exceeded. Try again in {decision.retry_after} seconds."
            return make_error(request, 429, "TooManyRequests", message, headers)
        if decision.status == 500:
            return make_error(request, 500, "InternalServerError", "An unexpected error occurred.", headers)
        return make_error(
            request, decision.status, "ServiceUnavailable", "The service is temporarily unavailable.", headers
        )

    @staticmethod
    def siem_fault_reply(decision):
        headers = {"Retry-After": decision.retry_after} if decision.retry_after else {}
        messages = {429: "Too many requests.", 500: "An error occurred in the service."}
        return siem_error(decision.status, messages.get(decision.status, "The service is unavailable."), headers)

    def token(self, request, tenant, version):
        if request.method != "POST":
            return entra_error(
                405, "invalid_request", 900561, "The endpoint only accepts POST requests.", request.correlation_id
            )
        client_id = request.form.get("client_id", "")
        with self._lock:
            self._token_requests["v2.0" if version == "2.0" else "v1"] += 1
            self._token_requests_by_app[client_id] += 1
        return self._entra.token(request, tenant, version)

    def authenticate(self, request):
        """The verified claims of the bearer token, or the reason it is refused."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Authorization header is missing or malformed.")
        claims = self.signer.verify(token.strip())
        if claims.get("tid") != self.tenant_id:
            raise InvalidToken("The token was issued for another tenant.")
        return claims

    def api(self, request, route):
        try:
            claims = self.authenticate(request)
        except InvalidToken as exc:
            return defender_error(
                request, 401, "Unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        api = scopes.api_for(claims.get("aud", ""))
        if api != scopes.DEFENDER:
            return defender_error(
                request,
                401,
                "Unauthorized",
                f"The token's audience '{claims.get('aud')}' is not valid for this API.",
                {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="The audience is invalid"'},
            )
        if [part.lower() for part in route] == ["advancedqueries", "run"]:
            return hunting_reply(request, claims, self.data.telemetry, graph=False)
        if request.method != "GET":
            return defender_error(request, 405, "BadRequest", f"The HTTP method {request.method} is not supported.")
        return self._defender.handle(request, route, claims)

    def siem(self, request):
        """The SIEM exporter's checks, in its own words: 401 for a missing, malformed or foreign-audience token, 403
        for a token of a tenant it does not serve (Microsoft: a domain not managed by the tenant, a deleted tenant)."""
        unauthorized = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return siem_error(401, "Authorization has been denied for this request.", unauthorized)
        try:
            claims = self.signer.verify(token.strip())
        except InvalidToken:
            return siem_error(401, "Authorization has been denied for this request.", unauthorized)
        if scopes.api_for(claims.get("aud", "")) != scopes.SIEM:
            return siem_error(401, "Authorization has been denied for this request.", unauthorized)
        if claims.get("tid") != self.tenant_id:
            # The page's own words for its 403; the exporter's real body is not documented.
            return siem_error(
                403,
                "Unauthorized exception - any of the domains is not managed by the tenant administrator or tenant "
                "state is deleted.",
            )
        if request.method != "GET":
            return siem_error(405, f"The requested resource does not support http method '{request.method}'.")
        return self._siem.handle(request)

    def graph(self, request, version):
        try:
            claims = self.authenticate(request)
        except InvalidToken as exc:
            message = "Access token is empty." if not request.headers.get("Authorization") else str(exc)
            return graph_error(request, 401, "InvalidAuthenticationToken", message)
        if scopes.api_for(claims.get("aud", "")) != scopes.GRAPH:
            return graph_error(
                request, 401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        if request.path.rstrip("/").lower().endswith("/security/runhuntingquery"):
            return hunting_reply(request, claims, self.data.telemetry, graph=True)
        if request.method != "GET":
            return graph_error(
                request, 405, "Request_BadRequest", f"The HTTP method {request.method} is not supported."
            )
        return self._graph.handle(request, version, claims)

    def control(self, request, route):
        """/_simulator/faults (GET, POST/PUT to set, DELETE to clear), /_simulator/counters (GET, DELETE to reset),
        /_simulator/procedures (POST: a procedure ran, as `procedure_ran`) and /_simulator/requests (GET): the
        in-process controls, for a simulator in another process."""
        if route == ["faults"]:
            if request.method in ("POST", "PUT", "PATCH"):
                try:
                    self.faults.set(**request.json())
                except (ValueError, TypeError) as exc:
                    return Reply(400, {"error": {"code": "InvalidInput", "message": str(exc)}})
            elif request.method == "DELETE":
                self.faults.clear()
            return Reply(200, self.faults.snapshot())
        if route == ["counters"]:
            if request.method == "DELETE":
                self.reset_counters()
            return Reply(200, self.counters())
        if route == ["procedures"] and request.method == "POST":
            return self._procedure_control(request)
        if route == ["requests"] and request.method == "GET":
            return Reply(200, [asdict(record) for record in self.requests])
        return Reply(404, {"error": {"code": "NotFound", "message": "Unknown simulator control."}})

    def _procedure_control(self, request):
        """POST /_simulator/procedures {"machine", "technique", "command", "started", "stopped"?, "response"?,
        "fileName"?, "delaySeconds"?}: 201 with the alert's ID (null when Defender raises none)."""
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise TypeError("the body is a JSON object")
            started = datetime.fromisoformat(str(body["started"]))
            stopped = datetime.fromisoformat(str(body.get("stopped") or body["started"]))
            if started.tzinfo is None or stopped.tzinfo is None:
                raise ValueError("started and stopped carry a UTC offset")
            alert_id = self.procedure_ran(
                str(body["machine"]),
                str(body["technique"]),
                str(body.get("command", "")),
                started,
                stopped,
                str(body.get("response", "alerted")),
                str(body.get("fileName", "")),
                timedelta(seconds=float(body.get("delaySeconds", 0))),
            )
        except UnknownMachine as exc:
            return Reply(404, {"error": {"code": "NotFound", "message": str(exc)}})
        except KeyError as exc:
            return Reply(400, {"error": {"code": "InvalidInput", "message": f"missing field {exc.args[0]!r}"}})
        except (ValueError, TypeError, OverflowError) as exc:
            return Reply(400, {"error": {"code": "InvalidInput", "message": str(exc)}})
        return Reply(201, {"alertId": alert_id})

    def __repr__(self):
        state = f"{self.base_url} SIEM {self.siem_base_url}" if self._server else "stopped"
        return f"<Simulator seed={self.seed} {state}>"


class _SiemListener:
    """The SIEM exporter's listener hands its requests to the simulator marked as the exporter's own."""

    def __init__(self, simulator):
        self.simulator = simulator

    def handle(self, request):
        return self.simulator.handle(request, siem=True)
