"""Network endpoints that misbehave below HTTP, for testing a client's connect and read timeouts."""

import contextlib
import socket
import threading
from dataclasses import dataclass, field


def closed_port(host="127.0.0.1"):
    """A TCP port on host with nothing listening (it was free a moment ago), so a connect is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class SilentListener:
    host: str
    port: int
    accepted: int = 0
    connections: list = field(default_factory=list, repr=False)


@contextlib.contextmanager
def silent_listener(host="127.0.0.1"):
    """A TCP listener that accepts connections and never sends a byte: TLS handshakes and reads time out."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(64)
    server.settimeout(0.1)
    listener = SilentListener(host, server.getsockname()[1])
    stopping = threading.Event()

    def accept():
        while not stopping.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            listener.connections.append(connection)
            listener.accepted += 1

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stopping.set()
        thread.join(timeout=2)
        for connection in listener.connections:
            connection.close()
        server.close()
