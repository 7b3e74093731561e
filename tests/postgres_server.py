"""A real, throw-away PostgreSQL server for tests: initdb in a temporary directory, a free loopback port.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/<version>/bin``). The server
refuses to run as root, so under root it runs as the ``postgres`` user (``runuser``). Tests that need it
skip with the reason when the binaries (or that user) are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.apphelpers import free_port

USER = "frood"
DATABASE = "frood"


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian layout, or ``pg_config --bindir``)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name), reverse=True):
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (bindir / "initdb").is_file():
            return bindir
    return None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


class TemporaryPostgres:
    """``start()`` → a running server with database ``frood``; ``url``; ``stop()`` removes everything."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="frood-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> TemporaryPostgres:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        deadline = time.time() + 30
        while self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode != 0:
            if time.time() > deadline:
                raise TimeoutError(f"PostgreSQL did not accept connections: {self.log()}")
            time.sleep(0.2)
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return self

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
