"""The HTTPS layer: a threading HTTP/1.1 server whose TLS handshakes happen on the connection's own thread.

Handshaking in the accept loop would let one silent client stall every other one, so the listening socket stays plain
and each accepted socket is wrapped by the thread that serves it.
"""

import contextlib
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .reply import Reply, Request

logger = logging.getLogger("defender.simulator")

HANDSHAKE_TIMEOUT = 10
IDLE_TIMEOUT = 30
MAX_BODY = 1 << 20


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, ssl_context, application):
        self.ssl_context = ssl_context
        self.application = application
        self._open = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            # An untrusting client (or a port scanner) hangs up during the handshake; that is its business.
            logger.debug("TLS handshake with %s:%s failed: %s", *client_address, exc)
            return
        tls.settimeout(IDLE_TIMEOUT)
        with self._open_lock:
            self._open.add(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("connection from %s:%s ended: %s", *client_address, exc)
        finally:
            with self._open_lock:
                self._open.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def close_open_connections(self):
        """Hang up on kept-alive clients, so a stopped simulator really stops answering."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):
        logger.exception("simulator request from %s:%s failed", *client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle and delayed ACKs add 40 ms to every answer.
    disable_nagle_algorithm = True
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_PATCH(self):
        self.serve("PATCH")

    def do_DELETE(self):
        self.serve("DELETE")

    def serve(self, method):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.respond(Reply(413, {"error": {"code": "BadRequest", "message": "Request body too large."}}))
            return
        body = self.rfile.read(length) if length else b""
        pairs = parse_qsl(url.query, keep_blank_values=True)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address)
        request = Request(
            method=method,
            path=unquote(url.path),
            query=url.query,
            params=dict(pairs),
            multi_params=pairs,
            headers=self.headers,
            body=body,
            client=self.client_address[:2],
            origin=f"https://{host}",
        )
        self.respond(self.server.application.handle(request))

    def respond(self, reply):
        payload, content_type = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format, *args):
        # The request line only: bodies (which carry client secrets) and Authorization headers are never logged.
        logger.debug("%s:%s %s", self.client_address[0], self.client_address[1], format % args)
