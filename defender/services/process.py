"""What the services keep while the process lives, in one place: the HTTP sessions, the trust bundles written to
disk, the sign-in library's apps with their tokens, and how this process's calls introduce themselves.

``PROCESS.clear()`` forgets all of it (after an encryption key rotation, or for a clean slate between tests).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")

# Sent on every request so that Microsoft (and a proxy's log) can tell this product's calls, and which side made
# them: the site, or a remote node (whose agent says so when it starts).
SITE_USER_AGENT = "defender-atp-director/1.0 (site)"


class Kept(Generic[Key, Value]):
    """At most ``most`` values, made on first use and kept until the least recently used one makes room."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._lock = threading.Lock()
        self._values: OrderedDict[Key, Value] = OrderedDict()

    def get(self, key: Key, make: Callable[[], Value]) -> Value:
        with self._lock:
            value = self._values.get(key)
            if value is None:
                value = self._values[key] = make()
            self._values.move_to_end(key)
            while len(self._values) > self.most:
                self._values.popitem(last=False)
            return value

    def drop(self, key: Key) -> None:
        with self._lock:
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Process:
    """This process's caches (each module asks for its own with ``keep``) and its User-Agent, which a remote node's
    agent sets to its own when it starts."""

    def __init__(self) -> None:
        self.user_agent = SITE_USER_AGENT
        self._kept: list[Kept[Any, Any]] = []

    def keep(self, most: int) -> Kept[Key, Value]:
        """A new cache of at most ``most`` values, which ``clear`` empties too."""
        kept: Kept[Key, Value] = Kept(most)
        self._kept.append(kept)
        return kept

    def clear(self) -> None:
        """Back to how the process started: every cache empty, the site's User-Agent."""
        self.user_agent = SITE_USER_AGENT
        for kept in self._kept:
            kept.clear()


PROCESS = Process()
