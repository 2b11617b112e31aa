"""The HTTP seam against servers that misbehave: redirects, endless paging, dripping or huge bodies, odd headers,
IPv6 hosts and over-long SOCKS5 credentials. Each server here is a few lines on a real socket."""

import contextlib
import dataclasses
import gzip
import json
import socket
import ssl
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from defender import presets
from defender.services import auth, client, proxy_check, transport
from defender.services.client import ApiClient, retry_after_seconds
from defender.services.connection import ConnectionSettings, ProxySettings
from defender.services.connectivity import iter_test_steps
from defender.services.errors import ApiFailed, BadResponse, ConnectionFailed, ProxyFailed, Throttled
from defender.services.process import PROCESS
from defender.services.proxy_check import check_proxy
from defender.services.transport import Transport
from tests.fixtures.connection import proxy_for, settings_for
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER, ConnectProxy

SECRET = "s3cret-value-never-to-leave"
TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(autouse=True)
def fresh_credentials():
    PROCESS.clear()
    yield
    PROCESS.clear()


# --- tiny servers -------------------------------------------------------------------------------------------------


class Server:
    """An HTTP(S) server on 127.0.0.1 answering with ``answer(request) -> (status, headers, body)``; it records
    every request (method, path, query, headers, body)."""

    def __init__(self, answer, context=None):
        self.answer = answer
        self.received = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = {
                    "method": self.command,
                    "path": parts.path,
                    "query": {key: values[0] for key, values in parse_qs(parts.query).items()},
                    "headers": dict(self.headers),
                    "body": body,
                }
                server.received.append(request)
                status, headers, content = server.answer(request)
                if isinstance(content, dict | list):
                    content = json.dumps(content).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.origin = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(answer, context=None):
        servers.append(Server(answer, context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def tls():
    """A CA and a server context for 127.0.0.1 signed by it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return ca.cert_pem.bytes().decode(), context


class RawServer:
    """Accepts connections and hands each socket to ``behave(sock)``: for answers no HTTP server would send."""

    def __init__(self, behave):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.behave = behave
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        with contextlib.suppress(OSError), sock:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.behave(sock)

    def close(self):
        self.listener.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(behave):
        servers.append(RawServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


class StaticTokens:
    def token(self):
        return "static.token"

    def drop(self):
        pass


def http_settings(port, **overrides):
    values = {
        "flavour": presets.MDE,
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
        "client_id": "app",
        "client_secret": SECRET,
        "tenant_id": TENANT,
        "auth_url": f"http://127.0.0.1:{port}",
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "max_retries": 0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)


def api_for(port, **overrides):
    return ApiClient(http_settings(port, **overrides), StaticTokens())


# --- redirects ----------------------------------------------------------------------------------------------------


def test_a_token_request_redirected_elsewhere_fails_and_the_secret_stays_home(serve):
    elsewhere = serve(lambda request: (200, {"Content-Type": "application/json"}, {"access_token": "x"}))
    sign_in = serve(lambda request: (307, {"Location": f"{elsewhere.origin}/{TENANT}/oauth2/token"}, b""))
    settings = http_settings(
        sign_in.port, host="api.example.net", flavour=presets.SIEM, resource="https://graph.windows.net"
    )
    with pytest.raises(BadResponse) as failure:
        auth.acquire_token(settings)
    assert len(sign_in.received) == 1 and SECRET.encode() in sign_in.received[0]["body"]
    assert elsewhere.received == []
    message = str(failure.value)
    assert message.startswith(
        f"Entra ID at 127.0.0.1:{sign_in.port} answered 307 Temporary Redirect, a redirect to "
        f"{elsewhere.origin}; this console does not follow redirects."
    )
    assert "Check the Auth URL" in message
    assert SECRET not in message + repr(failure.value)


def _openid_configuration(origin):
    return {
        "issuer": f"{origin}/{TENANT}/v2.0",
        "authorization_endpoint": f"{origin}/{TENANT}/oauth2/v2.0/authorize",
        "token_endpoint": f"{origin}/{TENANT}/oauth2/v2.0/token",
        "jwks_uri": f"{origin}/{TENANT}/discovery/v2.0/keys",
    }


def test_msal_token_request_redirected_elsewhere_fails_without_re_sending_the_secret(serve, tls):
    ca_pem, context = tls
    elsewhere = serve(lambda request: (200, {"Content-Type": "application/json"}, {"access_token": "x"}))

    def sign_in_answer(request):
        if request["method"] == "GET":
            return 200, {"Content-Type": "application/json"}, _openid_configuration(sign_in.origin)
        return 307, {"Location": f"{elsewhere.origin}/{TENANT}/oauth2/v2.0/token"}, b""

    sign_in = serve(sign_in_answer, context)
    settings = http_settings(
        sign_in.port, protocol="https", auth_url=sign_in.origin, ca_certificate=ca_pem, resource=presets.MDE
    )
    with pytest.raises(BadResponse) as failure:
        auth.acquire_token(settings)
    posts = [request for request in sign_in.received if request["method"] == "POST"]
    assert len(posts) == 1 and SECRET.encode() in posts[0]["body"]
    assert elsewhere.received == []
    assert f"answered 307 Temporary Redirect, a redirect to {elsewhere.origin}" in str(failure.value)
    assert str(failure.value).startswith(f"127.0.0.1:{sign_in.port} answered")  # Host and Auth URL: same server
    assert "Check the Host and the Auth URL" in str(failure.value)


def test_a_redirected_openid_discovery_is_a_clear_error_not_a_crash(serve, tls):
    ca_pem, context = tls
    sign_in = serve(lambda request: (302, {"Location": "https://login.example.net/elsewhere"}, b""), context)
    settings = http_settings(
        443, protocol="https", host="api.example.net", auth_url=sign_in.origin, ca_certificate=ca_pem
    )
    with pytest.raises(BadResponse) as failure:
        auth.acquire_token(settings)
    assert str(failure.value).startswith(
        f"Entra ID at 127.0.0.1:{sign_in.port} answered 302 Found, a redirect to https://login.example.net; "
        "this console does not follow redirects."
    )


def test_an_api_call_redirected_elsewhere_is_not_followed_and_keeps_the_token(serve):
    elsewhere = serve(lambda request: (200, {}, {"value": []}))
    api_host = serve(lambda request: (302, {"Location": f"{elsewhere.origin}/api/alerts"}, b""))
    api = api_for(api_host.port, auth_url="https://login.microsoftonline.com")
    with pytest.raises(BadResponse) as failure:
        api.get_json(api.url("/api/alerts"))
    assert elsewhere.received == []
    assert failure.value.code == 302
    assert str(failure.value) == (
        f"Defender at 127.0.0.1:{api_host.port} answered 302 Found, a redirect to {elsewhere.origin}; this console "
        "does not follow redirects. Check the Host, Port and Protocol: they must be the API's own, not an address "
        "that forwards to it."
    )


def test_a_redirect_on_the_same_host_names_the_path_but_not_the_query(serve):
    api_host = serve(lambda request: (301, {"Location": "/moved/alerts?sig=abcdef"}, b""))
    api = api_for(api_host.port, auth_url="https://login.microsoftonline.com")
    with pytest.raises(BadResponse) as failure:
        api.get_json(api.url("/api/alerts"))
    assert "answered 301 Moved Permanently, a redirect to /moved/alerts on the same host" in str(failure.value)
    assert "sig=" not in str(failure.value)


# --- paging -------------------------------------------------------------------------------------------------------


def _paging_server(serve, pages):
    """Answers GET /api/alerts?page=N (no page: the first) with pages[N], links written relative to its origin."""

    def answer(request):
        body = dict(pages[request["query"].get("page", "first")])
        if "@odata.nextLink" in body:
            body["@odata.nextLink"] = server.origin + body["@odata.nextLink"]
        return 200, {"Content-Type": "application/json"}, body

    server = serve(answer)
    return server


def test_empty_pages_that_repeat_their_next_link_stop_with_a_clear_error(serve):
    pages = {
        "first": {"value": [], "@odata.nextLink": "/api/alerts?page=2"},
        "2": {"value": [], "@odata.nextLink": "/api/alerts?page=2"},
    }
    server = _paging_server(serve, pages)
    with pytest.raises(BadResponse) as failure:
        list(api_for(server.port).iter_items("/api/alerts"))
    assert "Defender repeated a page of /api/alerts: the link on page 2 leads to a page already read" in str(
        failure.value
    )
    assert len(server.received) == 2


def test_a_two_page_cycle_stops_with_a_clear_error(serve):
    pages = {
        "first": {"value": [{"id": "a"}], "@odata.nextLink": "/api/alerts?page=2"},
        "2": {"value": [{"id": "b"}], "@odata.nextLink": "/api/alerts?page=3"},
        "3": {"value": [{"id": "c"}], "@odata.nextLink": "/api/alerts?page=2"},
    }
    server = _paging_server(serve, pages)
    with pytest.raises(BadResponse) as failure:
        list(api_for(server.port).iter_items("/api/alerts"))
    assert "repeated a page" in str(failure.value)
    assert len(server.received) == 3


def test_a_link_back_to_the_first_page_is_a_repeat(serve):
    pages = {
        "first": {"value": [{"id": "a"}], "@odata.nextLink": "/api/alerts?page=2"},
        "2": {"value": [{"id": "b"}], "@odata.nextLink": "/api/alerts?%24top=2"},
    }
    server = _paging_server(serve, pages)
    with pytest.raises(BadResponse, match="repeated a page"):
        list(api_for(server.port).iter_items("/api/alerts", page_size=2))


def test_endless_full_pages_without_a_next_link_stop_at_the_page_cap(serve, monkeypatch):
    monkeypatch.setattr(client, "MAX_PAGES", 12)
    server = serve(
        lambda request: (200, {}, {"value": [{"id": f"{request['query'].get('$skip', '0')}-{n}"} for n in range(3)]})
    )
    with pytest.raises(ApiFailed) as failure:
        list(api_for(server.port).iter_items("/api/alerts", page_size=3))
    assert len(server.received) == 12
    assert str(failure.value).startswith("Defender had more than 12 pages of /api/alerts (36 results so far)")
    assert "shorter time window" in str(failure.value)


def test_endless_new_next_links_stop_at_the_page_cap(serve, monkeypatch):
    monkeypatch.setattr(client, "MAX_PAGES", 8)
    server = serve(
        lambda request: (
            200,
            {},
            {
                "value": [],
                "@odata.nextLink": f"{server.origin}/api/alerts?page={int(request['query'].get('page', 1)) + 1}",
            },
        )
    )
    with pytest.raises(ApiFailed, match="more than 8 pages"):
        list(api_for(server.port).iter_items("/api/alerts"))
    assert len(server.received) == 8


def test_the_page_cap_is_generous_for_real_listings():
    assert client.MAX_PAGES * 1000 >= 1_000_000  # a million results at the default page size


def test_a_next_link_with_an_impossible_port_is_a_bad_response(serve):
    server = serve(lambda request: (200, {}, {"value": [{"id": "a"}], "@odata.nextLink": "http://127.0.0.1:99999/x"}))
    with pytest.raises(BadResponse) as failure:
        list(api_for(server.port).iter_items("/api/alerts"))
    assert "Page 1 of /api/alerts had a next link that is not a valid URL; not followed." in str(failure.value)


def test_a_next_link_that_is_not_text_is_a_bad_response(serve):
    server = serve(lambda request: (200, {}, {"value": [{"id": "a"}], "@odata.nextLink": 42}))
    with pytest.raises(BadResponse, match="linked to another host"):
        list(api_for(server.port).iter_items("/api/alerts"))


# --- bodies: time and size ----------------------------------------------------------------------------------------


def _drip(length=1000, interval=0.5, chunked=False):
    def behave(sock):
        if chunked:
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
        for _ in range(length):
            sock.sendall(b"1\r\n \r\n" if chunked else b" ")
            time.sleep(interval)

    return behave


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_dripping_body_fails_at_the_response_deadline(raw_server, chunked):
    server = raw_server(_drip(chunked=chunked))
    api = api_for(server.port, connect_timeout=1.0, read_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as failure:
        api.get(api.url("/api/alerts"))
    elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 3.6  # the connect timeout plus twice the read timeout: 3 s
    assert str(failure.value).startswith(
        f"127.0.0.1:{server.port} did not complete its answer within 3 s (the connect timeout plus 2 × the read "
        "timeout); "
    )
    assert "bytes of the body had arrived" in str(failure.value)


def test_a_body_that_stops_is_a_read_timeout(raw_server):
    def behave(sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        time.sleep(3)

    server = raw_server(behave)
    api = api_for(server.port, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as failure:
        api.get(api.url("/api/alerts"))
    assert time.monotonic() - started < 1.5
    assert str(failure.value).startswith(
        f"127.0.0.1:{server.port} began its answer, then sent nothing for 0.5 s (read timeout)."
    )


def test_a_body_cut_short_is_a_connection_failure(raw_server):
    server = raw_server(lambda sock: sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"))
    api = api_for(server.port)
    with pytest.raises(ConnectionFailed) as failure:
        api.get(api.url("/api/alerts"))
    assert f"127.0.0.1:{server.port} broke off its answer after 10 bytes (the connection closed)." in str(failure.value)


def test_a_declared_body_beyond_the_limit_is_refused_before_reading(raw_server):
    def behave(sock):
        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {transport.MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        time.sleep(2)

    server = raw_server(behave)
    api = api_for(server.port)
    started = time.monotonic()
    with pytest.raises(BadResponse) as failure:
        api.get(api.url("/api/alerts"))
    assert time.monotonic() - started < 1
    assert str(failure.value) == (
        f"The answer from 127.0.0.1:{server.port} is larger than 200 MB; not read. Lower the page size in Advanced "
        "options."
    )


def test_an_undeclared_body_beyond_the_limit_is_cut_off(raw_server, monkeypatch):
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 2**20)

    def behave(sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"x" * 65536
        for _ in range(40):
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        sock.sendall(b"0\r\n\r\n")

    server = raw_server(behave)
    api = api_for(server.port)
    with pytest.raises(BadResponse, match="is larger than 1 MB"):
        api.get(api.url("/api/alerts"))


def test_a_compressed_bomb_counts_its_decompressed_size(serve, monkeypatch):
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 2**20)
    bomb = gzip.compress(b"[" + b" " * (4 * 2**20) + b"]")
    server = serve(lambda request: (200, {"Content-Encoding": "gzip"}, bomb))
    api = api_for(server.port)
    with pytest.raises(BadResponse, match="is larger than 1 MB"):
        api.get(api.url("/api/alerts"))


def test_a_gzip_bomb_stops_decompressing_at_its_bound_well_below_the_body_cap(serve, monkeypatch):
    monkeypatch.setattr(transport, "MAX_DECODED_BYTES", 2**20)
    bomb = gzip.compress(b"0" * (10 * 2**20))
    assert len(bomb) < 20_000  # ten megabytes of zeros, ten kilobytes on the wire
    server = serve(lambda request: (200, {"Content-Encoding": "gzip"}, bomb))
    api = api_for(server.port)
    tracemalloc.start()
    try:
        with pytest.raises(BadResponse) as failure:
            api.get(api.url("/api/alerts"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(failure.value) == (
        f"The compressed answer from 127.0.0.1:{server.port} (gzip) expands to more than 1 MB; decompression stopped "
        "there, not read. No page of alerts is that large; if the service really sends one, lower the page size in "
        "Advanced options."
    )
    assert peak < 4 * 2**20  # it stopped early: inflating the whole bomb takes ten megabytes


def test_a_plain_body_beyond_the_decompression_bound_is_read(serve, monkeypatch):
    monkeypatch.setattr(transport, "MAX_DECODED_BYTES", 2**20)
    body = b"[" + b" " * (2 * 2**20) + b"]"
    server = serve(lambda request: (200, {}, body))
    api = api_for(server.port)
    assert api.get_json(api.url("/api/alerts")) == []


def test_an_answer_nested_too_deeply_to_parse_is_a_bad_response(serve):
    server = serve(lambda request: (200, {}, b"[" * 100_000 + b"]" * 100_000))
    api = api_for(server.port)
    with pytest.raises(BadResponse, match="nests arrays or objects too deeply to read"):
        api.get_json(api.url("/api/alerts"))


def test_a_broken_compressed_body_is_a_bad_response(serve):
    server = serve(lambda request: (200, {"Content-Encoding": "gzip"}, b"not gzip at all"))
    api = api_for(server.port)
    with pytest.raises(BadResponse, match="could not be decompressed"):
        api.get(api.url("/api/alerts"))


def test_a_streamed_answer_reads_like_a_plain_one_and_the_connection_is_reused(clean_simulator):
    settings = settings_for(clean_simulator)
    site_road = Transport(settings)
    url = f"{clean_simulator.base_url}/{clean_simulator.tenant_id}/v2.0/.well-known/openid-configuration"
    first, second = site_road.get(url), site_road.get(url)
    assert first.json()["token_endpoint"] and first.text == second.text and first.content == second.content
    ports = {record.client_port for record in clean_simulator.requests}
    assert len(ports) == 1


def test_a_page_of_ten_thousand_alerts_fits_well_inside_the_deadline(tmp_path):
    from defender.simulator import Simulator

    with Simulator(seed=1, alerts_on_bulk_machine=10000, ca_path=tmp_path / "ca.pem") as simulator:
        settings = settings_for(simulator, page_size=10000, read_timeout=10.0)
        api = ApiClient(settings, auth.TokenSource(settings))
        machines = api.get_json(
            api.url("/api/v1.0/machines"), {"$filter": f"startswith(computerDnsName,'{simulator.bulk_hostname}')"}
        )["value"]
        started = time.monotonic()
        response = api.get(api.url(f"/api/v1.0/machines/{machines[0]['id']}/alerts"), {"$top": 10000})
        elapsed = time.monotonic() - started
    assert len(response.json()["value"]) == 10000
    assert elapsed < (settings.connect_timeout + 2 * settings.read_timeout) / 2


# --- Retry-After --------------------------------------------------------------------------------------------------


class Answer:
    def __init__(self, status, content=b"{}", headers=None):
        self.status_code = status
        self.content = content
        self.headers = headers or {}


@pytest.mark.parametrize("value", ["²", "٣", "1.5", "-3", "0x10", "3 s"])
def test_retry_after_that_is_not_plain_digits_is_ignored(value):
    assert retry_after_seconds(Answer(429, headers={"Retry-After": value})) is None


def test_a_superscript_retry_after_falls_back_to_the_default_backoff(serve):
    answers = iter([(503, {"Retry-After": "²"}, {}), (200, {}, {"value": [{"id": "a"}]})])
    server = serve(lambda request: next(answers))
    slept = []
    api = ApiClient(http_settings(server.port, max_retries=2), StaticTokens(), sleep=slept.append)
    assert api.get_json(api.url("/api/alerts"))["value"] == [{"id": "a"}]
    assert slept == [client.FIRST_BACKOFF]


def test_an_absurd_retry_after_is_capped_and_still_a_throttled_error(serve):
    server = serve(lambda request: (429, {"Retry-After": "9" * 40}, {}))
    api = ApiClient(http_settings(server.port, max_retries=2), StaticTokens(), sleep=lambda seconds: None)
    with pytest.raises(Throttled) as failure:
        api.get_json(api.url("/api/alerts"))
    assert "try again after" in str(failure.value)
    assert retry_after_seconds(Answer(429, headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"})) == 86400


# --- IPv6 hosts ---------------------------------------------------------------------------------------------------


def _ipv6_settings(host, **overrides):
    values = {"flavour": presets.MDE, "host": host, "client_id": "a", "tenant_id": "t", "auth_url": "https://x"}
    return ConnectionSettings(**{**values, **overrides})


@pytest.mark.parametrize("host", ["2001:db8::1", "[2001:db8::1]"])
def test_an_ipv6_host_is_bracketed_in_urls(host):
    assert _ipv6_settings(host, port=8443).base_url == "https://[2001:db8::1]:8443"
    assert _ipv6_settings(host).base_url == "https://[2001:db8::1]"
    assert _ipv6_settings(host).host == "2001:db8::1"
    proxy = ProxySettings("socks5", host, 1080, username="u", password="p")
    assert proxy.url() == "socks5h://u:p@[2001:db8::1]:1080"
    assert proxy.address == "[2001:db8::1]:1080"


def test_names_and_ipv4_addresses_are_unchanged():
    assert _ipv6_settings("api.security.microsoft.com").base_url == "https://api.security.microsoft.com"
    assert _ipv6_settings("127.0.0.1", port=8443, protocol="http").base_url == "http://127.0.0.1:8443"


def _ipv6_loopback():
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_a_refused_ipv6_connection_names_the_bracketed_address():
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        port = listener.getsockname()[1]
    settings = http_settings(port, host="::1")
    with pytest.raises(ConnectionFailed) as failure:
        Transport(settings).get(settings.base_url + "/")
    assert f"Connection to [::1]:{port} was refused" in str(failure.value)
    steps = list(iter_test_steps(dataclasses.replace(settings, host="[::1]")))
    assert steps[0].outcome == "passed"
    assert f"[::1]:{port}" in steps[1].message and "[[" not in steps[1].message


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_api_on_an_ipv6_host_is_reached():
    class V6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"value": [{"id": "v6"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = V6Server(("::1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        api = ApiClient(http_settings(httpd.server_address[1], host="::1"), StaticTokens())
        assert list(api.iter_items("/api/alerts")) == [{"id": "v6"}]
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- SOCKS5 credentials -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["username", "password"])
def test_socks5_credentials_beyond_255_bytes_fail_the_proxy_test_clearly(socks_proxy, field):
    values = {"username": AUTH_USER, "password": AUTH_PASSWORD, field: "é" * 130}  # 260 bytes
    settings = proxy_for(socks_proxy, proxy_type="socks5", **values)
    result = check_proxy(settings, timeout=2)
    steps = {step.name: step for step in result.steps}
    assert steps["Proxy credentials"].outcome == "failed"
    what = "user name" if field == "username" else "password"
    assert steps["Proxy credentials"].message.startswith(
        f"SOCKS5 allows user names and passwords of at most 255 bytes; the proxy rule's {what} has 260."
    )


def test_socks5_credentials_beyond_255_bytes_fail_api_calls_before_connecting(simulator, socks_proxy):
    settings = settings_for(simulator, proxy=proxy_for(socks_proxy, AUTH_USER, "p" * 300, proxy_type="socks5"))
    with pytest.raises(ProxyFailed) as failure:
        auth.acquire_token(settings, fresh=True)
    assert "at most 255 bytes; the proxy rule's password has 300." in str(failure.value)
    assert "p" * 300 not in str(failure.value)


def test_socks5_credentials_the_socks_library_cannot_send_are_refused_everywhere(simulator, socks_proxy):
    proxy = proxy_for(socks_proxy, "u" * 200, AUTH_PASSWORD, proxy_type="socks5")
    settings = settings_for(simulator, proxy=proxy)
    with pytest.raises(ProxyFailed, match="The proxy rule's user name has 200 bytes; this console sends SOCKS5 user"):
        auth.acquire_token(settings, fresh=True)
    steps = list(iter_test_steps(settings))
    assert steps[1].outcome == "failed" and "at most 127 bytes" in steps[1].message
    proxy_steps = check_proxy(proxy, timeout=2).steps
    assert proxy_steps[1].outcome == "failed" and "at most 127 bytes" in proxy_steps[1].message


def test_socks5_credentials_up_to_127_bytes_still_work(clean_simulator):
    server = ConnectProxy("u" * 127, "p" * 127).start()
    try:
        settings = settings_for(clean_simulator, proxy=proxy_for(server, "u" * 127, "p" * 127, proxy_type="socks5"))
        assert auth.acquire_token(settings, fresh=True).access_token
    finally:
        server.stop()


# --- proxies answering oddly --------------------------------------------------------------------------------------


def test_a_proxy_status_in_superscript_digits_is_not_an_http_answer(raw_server):
    server = raw_server(lambda sock: sock.sendall("HTTP/1.1 ²00 OK\r\n\r\n".encode()))
    proxy = ProxySettings("http", "127.0.0.1", server.port)
    steps = check_proxy(proxy, timeout=2).steps
    assert steps[1].outcome == "failed"
    assert steps[1].message.startswith(f"The proxy 127.0.0.1:{server.port} did not answer like an HTTP proxy.")


def test_the_proxy_test_of_an_https_proxy_checks_its_certificate_with_the_rules_ca(https_proxy, monkeypatch):
    monkeypatch.setattr(proxy_check, "PROBE_TARGET", (https_proxy.host, https_proxy.port))
    trusted = check_proxy(proxy_for(https_proxy, proxy_type="https", ca_certificate=https_proxy.ca_pem), timeout=2)
    assert trusted.ok, trusted.steps
    assert (
        trusted.steps[0].message == f"Connected to 127.0.0.1:{https_proxy.port} over TLS; its certificate is trusted."
    )
    untrusted = check_proxy(proxy_for(https_proxy, proxy_type="https"), timeout=2)
    assert untrusted.steps[0].outcome == "failed"
    assert untrusted.steps[0].message.startswith(
        f"The certificate for the proxy 127.0.0.1:{https_proxy.port} is signed by an unknown CA."
    )
