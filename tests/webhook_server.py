"""A webhook receiver on a real socket (127.0.0.1): it records each POST, and answers with the status it is told."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What a Slack incoming webhook URL looks like: its path is the credential.
SECRET_PATH = "/services/T00000000/B00000000/webhook-path-secret-6f1c2e"


class WebhookServer:
    def __init__(self):
        self.received = []  # (path, headers, body as parsed JSON)
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                server.received.append((self.path, dict(self.headers), json.loads(body or b"null")))
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):  # quiet: the test reads what was received
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{SECRET_PATH}"

    @property
    def bodies(self):
        return [body for _, _, body in self.received]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
