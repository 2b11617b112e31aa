"""Files in ``var/`` that hold keys or data are readable by their owner only (0600), from the moment they exist.

``var/`` itself is 0700, so nobody else can open a file in it even in the instant between SQLite creating the
database file and the chmod below.
"""

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def private_folder(path: Path) -> None:
    """Create the folder as 0700, or take group and other permissions away from one made before this rule."""
    path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_FOLDER)


def write_private(path: Path, text: str) -> None:
    """Create ``path`` as 0600 and write ``text``: the file is never readable by others, not even while written."""
    private_folder(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def make_private(path: Path) -> None:
    """Take group and other permissions away from a file made before this rule (or by a library)."""
    if path.exists() and path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_FILE)


def make_sqlite_file_private(sender, connection, **kwargs) -> None:
    """SQLite creates its database file on the first connection, with the process's umask: make it 0600 at once.

    This runs before anything is written to a new file, and SQLite gives its journal and WAL files the database
    file's permissions. Nothing is done for PostgreSQL or an in-memory database.
    """
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if name and name != ":memory:" and not name.startswith("file:"):
        make_private(Path(name))
