"""Start and stop throwaway MariaDB and Redis server processes for a test session.

Each server gets its own temporary directory, a free port on 127.0.0.1 and its
own process group.  ``stop()`` (or leaving the ``with`` block) terminates it and
deletes the directory.  Two backstops make sure no server outlives the test
process: an ``atexit`` hook stops every server still running, and on Linux the
child is started with ``PR_SET_PDEATHSIG`` so the kernel kills it if the test
process dies without running ``atexit`` (SIGKILL, SIGTERM from a CI timeout).

Typical use in a ``conftest.py``::

    @pytest.fixture(scope="session")
    def mariadb() -> Iterator[MariaDBServer]:
        require_binaries(*MariaDBServer.BINARIES)
        with MariaDBServer() as server:
            yield server
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NoReturn, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
EXTRA_BINARY_DIRS = ("/usr/sbin", "/usr/local/sbin")
INSTALL_HINT = (
    "install it with `apt-get install mariadb-server redis-server` (CI installs them in .ci/run)"
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.05
PORT_ATTEMPTS = 3

_PORT_CLASH_MARKERS = ("Address already in use", "Bind on TCP/IP port")
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAX_TMPDIR_LENGTH = 80  # keeps <tmpdir>/mysql.sock below the 107-byte sun_path limit
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A throwaway server could not be started or queried."""


class _PortClashError(ServerError):
    """The server exited because its port was taken between picking and binding."""


def find_binary(name: str) -> str | None:
    """Return the path of executable ``name`` on PATH, /usr/sbin or /usr/local/sbin."""
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    dirs += [extra for extra in EXTRA_BINARY_DIRS if extra not in dirs]
    return shutil.which(name, path=os.pathsep.join(dirs))


def require_binaries(*names: str) -> None:
    """Skip the calling test if a binary is missing; fail instead when ``CI=true``."""
    missing = [name for name in names if find_binary(name) is None]
    if not missing:
        return
    import pytest  # lazily: the servers themselves do not need pytest

    message = f"{', '.join(missing)} not found: {INSTALL_HINT}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name} not found)"
    return "\n".join(text.splitlines()[-lines:])


def _child_env() -> dict[str, str]:
    """Return the environment minus MYSQL_*/MARIADB_* variables that redirect clients."""
    prefixes = ("MYSQL_", "MARIADB_")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def _make_tmpdir(prefix: str) -> Path:
    """Create a private temp dir whose path leaves room for a Unix socket inside it."""
    path = tempfile.mkdtemp(prefix=prefix)
    if len(path) > _MAX_TMPDIR_LENGTH and os.path.isdir("/tmp"):
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    return Path(path)


def _die_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making Linux SIGKILL the child when this process dies.

    The death signal fires when the *thread* that forked the child exits, so it
    is only used when starting from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, kill)

    return hook


def _check_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use 1-64 of [A-Za-z0-9_]")
    return name


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class _ServerProcess(ABC):
    """Lifecycle shared by the servers: temp dir, process group, readiness, stop."""

    BINARIES: ClassVar[tuple[str, ...]] = ()
    NAME: ClassVar[str] = "server"

    def __init__(self, start_timeout: float = START_TIMEOUT, *, port: int = 0) -> None:
        """`port` 0 picks a free one; a fixed port lets a server be restarted where it was."""
        self.start_timeout = start_timeout
        self.port = 0
        self._requested_port = port
        self.startup_seconds = 0.0
        self._binaries: dict[str, str] = {}
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()

    # -- public lifecycle -------------------------------------------------

    @property
    def tmpdir(self) -> Path:
        """The server's private temporary directory (exists while started)."""
        if self._dir is None:
            raise ServerError(f"{self.NAME} server is not started")
        return self._dir

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and wait until it answers queries."""
        if self._dir is not None:
            raise ServerError(f"{self.NAME} server is already started")
        began = time.monotonic()
        self._binaries = self._resolve_binaries()
        self._dir = _make_tmpdir(f"{self.NAME}-test-")
        self._owner_pid = os.getpid()
        _LIVE.add(self)
        try:
            self._prepare()
            self._launch_until_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        logger.info(
            "%s server ready on %s:%d in %.2fs", self.NAME, HOST, self.port, self.startup_seconds
        )
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and delete its temp dir."""
        _LIVE.discard(self)
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- faults, for fault-injection tests ----------------------------------

    def kill(self) -> None:
        """SIGKILL the server (no shutdown of any kind); its files and port stay for `restart()`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Start the server again on the same port and files, after `kill()`; waits until ready."""
        if self._dir is None:
            raise ServerError(f"{self.NAME} server is not started")
        if self._proc is not None and self._proc.poll() is None:
            raise ServerError(f"{self.NAME} server is still running")
        began = time.monotonic()
        self._launch()
        self._wait_ready(began + self.start_timeout)
        seconds = time.monotonic() - began
        logger.info("%s server restarted on port %d in %.2fs", self.NAME, self.port, seconds)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers until `resume()` (do resume
        before `stop()`, which would otherwise wait for its SIGTERM in vain)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise ServerError(f"{self.NAME} server is not running")
        _signal_group(self._proc.pid, sig)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- hooks for subclasses ---------------------------------------------

    def _prepare(self) -> None:
        """Work done once before the first launch (e.g. initialising a datadir); optional."""
        return None

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def _is_ready(self) -> bool: ...

    def _after_ready(self) -> None:
        """Work done once the server answers (e.g. creating a user); optional."""
        return None

    def _log_files(self) -> tuple[Path, ...]:
        return (self.tmpdir / "stdout.log",)

    # -- internals ----------------------------------------------------------

    def _binary(self, name: str) -> str:
        try:
            return self._binaries[name]
        except KeyError:
            raise ServerError(f"{self.NAME} server is not started") from None

    def _resolve_binaries(self) -> dict[str, str]:
        found = {name: find_binary(name) for name in self.BINARIES}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise ServerError(f"{', '.join(missing)} not found: {INSTALL_HINT}")
        return {name: path for name, path in found.items() if path is not None}

    def _launch_until_ready(self, deadline: float) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = self._requested_port or free_port()
            self._launch()
            try:
                self._wait_ready(deadline)
            except _PortClashError:
                logger.warning(
                    "%s: port %d was taken (attempt %d/%d), retrying",
                    self.NAME,
                    self.port,
                    attempt,
                    PORT_ATTEMPTS,
                )
                self._terminate()
                continue
            self._after_ready()
            return
        raise ServerError(f"{self.NAME}: no free port after {PORT_ATTEMPTS} attempts")

    def _launch(self) -> None:
        command = self._command()
        logger.debug("starting %s", " ".join(command))
        with (self.tmpdir / "stdout.log").open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                env=_child_env(),
                start_new_session=True,  # own process group: no stray Ctrl-C, killpg works
                preexec_fn=_die_with_parent(),  # only calls prctl(); see its docstring
            )

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                self._raise_exited()
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.NAME} not ready after {self.start_timeout:.0f}s\n{self._logs()}"
                )
            time.sleep(POLL_INTERVAL)

    def _raise_exited(self) -> NoReturn:
        code = self._proc.returncode if self._proc is not None else None
        logs = self._logs()
        if any(marker in logs for marker in _PORT_CLASH_MARKERS):
            raise _PortClashError(f"{self.NAME}: port {self.port} in use")
        raise ServerError(f"{self.NAME} exited during startup (code {code})\n{logs}")

    def _logs(self) -> str:
        return "\n".join(f"--- {path.name} ---\n{_tail(path)}" for path in self._log_files())

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.NAME, proc.pid)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


class MariaDBServer(_ServerProcess):
    """A throwaway MariaDB server with a password-protected admin user on 127.0.0.1."""

    BINARIES: ClassVar[tuple[str, ...]] = ("mariadb-install-db", "mariadbd", "mariadb")
    NAME: ClassVar[str] = "mariadb"
    USER: ClassVar[str] = "cms_test"

    def __init__(self, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(start_timeout)
        self.password = secrets.token_hex(16)

    @property
    def datadir(self) -> Path:
        """The server's data directory."""
        return self.tmpdir / "data"

    @property
    def socket_path(self) -> Path:
        """The Unix socket on which root can log in without a password."""
        return self.tmpdir / "mysql.sock"

    def url(self, database: str) -> str:
        """Return the async SQLAlchemy URL of ``database`` on this server."""
        credentials = f"{quote(self.USER, safe='')}:{quote(self.password, safe='')}"
        name = _check_name(database)
        return f"mysql+aiomysql://{credentials}@{HOST}:{self.port}/{name}?charset=utf8mb4"

    def execute(self, sql: str) -> str:
        """Run ``sql`` as root over the Unix socket; return the tab-separated rows."""
        command = [
            self._binary("mariadb"),
            "--no-defaults",
            f"--socket={self.socket_path}",
            "--user=root",
            "--batch",
            "--skip-column-names",
        ]
        return self._run_client(command, sql)

    def create_database(self, name: str) -> str:
        """Create an empty utf8mb4 database ``name`` and return its async SQLAlchemy URL."""
        self.execute(
            f"CREATE DATABASE `{_check_name(name)}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists."""
        self.execute(f"DROP DATABASE IF EXISTS `{_check_name(name)}`")

    # -- hooks ----------------------------------------------------------------

    def _common_options(self) -> list[str]:
        """Options for both mariadb-install-db and mariadbd (--no-defaults must be first)."""
        run_as = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise
        return [
            "--no-defaults",
            f"--datadir={self.datadir}",
            # Its own temporary files: servers of parallel runs must not share /tmp's names.
            f"--tmpdir={self.tmpdir}",
            *run_as,
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",  # default 96M: slower install, 3x the disk
        ]

    def _prepare(self) -> None:
        command = [
            self._binary("mariadb-install-db"),
            *self._common_options(),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        log = self.tmpdir / "install.log"
        with log.open("wb") as out:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                env=_child_env(),
                timeout=self.start_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise ServerError(f"mariadb-install-db failed ({result.returncode})\n{_tail(log)}")

    def _command(self) -> list[str]:
        return [
            self._binary("mariadbd"),
            *self._common_options(),
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.tmpdir / 'mariadbd.pid'}",
            f"--log-error={self.tmpdir / 'error.log'}",
            f"--tmpdir={self.tmpdir}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00",
            # Durability is pointless for a throwaway database; speed is not.
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            # io_uring/libaio are often unavailable or limited in CI containers.
            "--innodb-use-native-aio=0",
        ]

    def _is_ready(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            return self.execute("SELECT 1").strip() == "1"
        except ServerError:
            return False

    def _after_ready(self) -> None:
        account = f"'{self.USER}'@'{HOST}'"
        self.execute(
            f"CREATE USER {account} IDENTIFIED BY '{self.password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;"
        )
        self._check_tcp_login()

    def _log_files(self) -> tuple[Path, ...]:
        return (self.tmpdir / "error.log", self.tmpdir / "stdout.log")

    # -- internals ----------------------------------------------------------

    def _check_tcp_login(self) -> None:
        """Log in over TCP as the test user, exactly as the application will."""
        config = self.tmpdir / "client.cnf"
        config.write_text(
            f"[client]\nhost={HOST}\nport={self.port}\nprotocol=TCP\n"
            f"user={self.USER}\npassword={self.password}\n"
        )
        config.chmod(0o600)
        command = [
            self._binary("mariadb"),
            f"--defaults-file={config}",
            "--batch",
            "--skip-column-names",
        ]
        if self._run_client(command, "SELECT CURRENT_USER()").strip() != f"{self.USER}@{HOST}":
            raise ServerError(f"mariadb: TCP login as {self.USER} returned the wrong user")

    def _run_client(self, command: list[str], sql: str) -> str:
        try:
            result = subprocess.run(
                command,
                input=sql,
                capture_output=True,
                text=True,
                env=_child_env(),
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ServerError(f"mariadb client timed out running {sql!r}") from error
        if result.returncode != 0:
            raise ServerError(f"mariadb client failed: {result.stderr.strip()}")
        return result.stdout


class RedisServer(_ServerProcess):
    """A throwaway, non-persistent Redis server on 127.0.0.1."""

    BINARIES: ClassVar[tuple[str, ...]] = ("redis-server",)
    NAME: ClassVar[str] = "redis"

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        options = {
            "port": str(self.port),
            "bind": HOST,
            "save": "",  # no RDB snapshots
            "appendonly": "no",
            "dir": str(self.tmpdir),
            "daemonize": "no",
        }
        pairs = ((f"--{key}", value) for key, value in options.items())
        return [self._binary("redis-server"), *itertools.chain.from_iterable(pairs)]

    def _is_ready(self) -> bool:
        client = redis.Redis(
            host=HOST,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # one attempt per poll; the poll loop retries
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


_LIVE: set[_ServerProcess] = set()


@atexit.register
def _stop_all() -> None:
    """Backstop: stop every server this process started and did not stop."""
    for server in list(_LIVE):
        if server._owner_pid == os.getpid():  # not in a forked child
            logger.warning("stopping leftover %s server (pid %s) at exit", server.NAME, server.pid)
            server.stop()
