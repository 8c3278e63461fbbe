"""MariaDB dependency provider for Nameko services.

pymysql is pure Python and does its socket I/O through the ``socket``
module, so under eventlet's monkey patch a worker that waits for MariaDB
yields to the hub, and slow queries in concurrent workers overlap.

Connections are opened lazily, on a worker's first checkout, so a service
starts even while MariaDB is down. Its readiness check calls
:meth:`MariaDBPool.ping`.
"""

import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import getLogger
from urllib.parse import unquote, urlsplit

import pymysql
from eventlet.semaphore import Semaphore
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider

from services.common.config import section as config_section
from services.common.secrets import read_secret


_log = getLogger(__name__)

DSN_SCHEMES = ("mysql", "mariadb")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3306
DEFAULT_POOL_SIZE = 5
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_WRITE_TIMEOUT = 30.0
DEFAULT_POOL_TIMEOUT = 10.0
#: Seconds a connection may rest in the pool before checkout pings it first.
#: The server may have dropped it meanwhile (``wait_timeout``, a restart).
PING_AFTER_IDLE = 30.0


class MariaDBUnavailable(Exception):
    """MariaDB cannot be used now: it refused or dropped the connection, or the pool is closed."""


class MariaDBPoolTimeout(MariaDBUnavailable):
    """Every pooled connection stayed in use for the whole ``pool_timeout``."""


def parse_dsn(dsn: str) -> dict:
    """Split ``mysql://user@host:port/database`` into pymysql's connect arguments.

    Returns ``host``, ``port``, ``user`` and ``database`` (None when the URI
    has no path). The host defaults to 127.0.0.1 and the port to 3306.
    Raises ValueError for another scheme, a missing user, query parameters,
    or a password in the URI. Messages never quote the URI, because it may
    contain that password.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in DSN_SCHEMES:
        raise ValueError(f"the URI must start with mysql:// or mariadb://, got {parts.scheme or 'no scheme'}")
    if parts.password is not None:
        raise ValueError("the URI contains a password: remove it and name a secret in password_secret")
    if not parts.username:
        raise ValueError("the URI lacks a user name, as in mysql://user@127.0.0.1:3306/database")
    if parts.query:
        raise ValueError("the URI has query parameters, which are not supported: use the config keys")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("the URI has an invalid port number") from None
    database = unquote(parts.path.lstrip("/")) or None
    return {
        "host": parts.hostname or DEFAULT_HOST,
        "port": port,
        "user": unquote(parts.username),
        "database": database,
    }


@dataclass(frozen=True)
class MariaDBSettings:
    """A MariaDB config section, checked, with the password read from its secret."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = field(repr=False)
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    pool_timeout: float = DEFAULT_POOL_TIMEOUT

    @classmethod
    def from_config(cls, config: dict, section: str) -> "MariaDBSettings":
        """Read and check the config section ``section``; raise ConfigurationError on a bad value."""
        settings = config_section(config, section)
        dsn = settings.get("dsn")
        if not dsn:
            raise ConfigurationError(
                f"config {section}.dsn is missing: set it to mysql://user@host:port/database"
            )
        try:
            address = parse_dsn(str(dsn))
        except ValueError as error:
            raise ConfigurationError(f"config {section}.dsn is invalid: {error}") from None
        if not address["database"]:
            raise ConfigurationError(
                f"config {section}.dsn names no database, as in mysql://user@host:port/database"
            )

        # The named secret may be unset: the account then has no password.
        secret_name = settings.get("password_secret")
        password = read_secret(secret_name, required=False) if secret_name else None
        if secret_name and password is None:
            _log.info("secret %s is not set; connecting to MariaDB without a password", secret_name)

        return cls(
            **address,
            password=password,
            pool_size=_positive(settings, section, "pool_size", DEFAULT_POOL_SIZE, int),
            connect_timeout=_positive(settings, section, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_positive(settings, section, "read_timeout", DEFAULT_READ_TIMEOUT),
            write_timeout=_positive(settings, section, "write_timeout", DEFAULT_WRITE_TIMEOUT),
            pool_timeout=_positive(settings, section, "pool_timeout", DEFAULT_POOL_TIMEOUT),
        )

    @property
    def address(self) -> str:
        """``user@host:port/database``, for messages and logs."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def connect_arguments(self) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password or "",
            "database": self.database,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "write_timeout": self.write_timeout,
        }


def _positive(settings: dict, section: str, key: str, default, kind=float):
    value = settings.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"config {section}.{key} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigurationError(f"config {section}.{key} must be positive, got {value!r}")
    return number


class MariaDBPool:
    """At most ``pool_size`` pymysql connections, opened on demand and reused.

    Greenthreads wait on an eventlet semaphore for a free slot, so a worker
    blocks only itself. ``with pool.connection() as connection`` checks one
    out. A connection that failed, or whose block was interrupted (a killed
    worker, an ``eventlet.Timeout``), is closed instead of being reused.

    NOTE: closing the socket does not stop a statement that is running.
    MariaDB 10.11 finishes it (a ``SLEEP(1)`` keeps its session for the full
    second), then notices the closed connection and rolls the transaction
    back.
    """

    def __init__(self, settings: MariaDBSettings, name: str):
        self.settings = settings
        self.name = name
        self.ping_after_idle = PING_AFTER_IDLE
        self._slots = Semaphore(settings.pool_size)
        self._idle = deque()  # (connection, time.monotonic() when it was checked in), newest last
        self._in_use = set()
        self._closed = False

    @property
    def size(self) -> int:
        """Number of open connections, idle or in use."""
        return len(self._idle) + len(self._in_use)

    @contextmanager
    def connection(self):
        """Check out a connection, then commit on success or roll back on error.

        The connection goes back to the pool afterwards; a broken one is
        closed. Raises :class:`MariaDBPoolTimeout` when no connection becomes
        free within ``pool_timeout``, and :class:`MariaDBUnavailable` when a
        new connection cannot be opened or the pool is closed. Errors of the
        queries themselves propagate as pymysql errors. A nested checkout
        needs a second slot, so with ``pool_size`` 1 it waits until
        MariaDBPoolTimeout.
        """
        connection = self._check_out()
        reusable = False
        try:
            yield connection
            connection.commit()
            reusable = True
        except Exception:
            reusable = self._roll_back(connection)
            raise
        finally:
            # A BaseException (GreenletExit, eventlet.Timeout) can stop pymysql
            # in the middle of a packet, so such a connection is never reused.
            self._check_in(connection, reusable)

    def ping(self) -> None:
        """Run ``SELECT 1`` on a pooled connection; raise MariaDBUnavailable if that fails."""
        try:
            with self.connection() as connection:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
        except pymysql.err.Error as error:
            raise MariaDBUnavailable(
                f"SELECT 1 on MariaDB at {self.settings.address} failed: {error}"
            ) from error

    def close(self) -> int:
        """Close every connection, idle or in use, and return how many were open.

        Checkouts after this raise MariaDBUnavailable. A connection that is
        in use when the pool closes is closed under its worker.
        """
        self._closed = True
        connections = [connection for connection, _ in self._idle]
        connections.extend(self._in_use)
        if self._in_use:
            _log.warning("%s: closing %d MariaDB connection(s) still in use", self.name, len(self._in_use))
        self._idle.clear()
        self._in_use.clear()
        for connection in connections:
            self._close_quietly(connection)
        return len(connections)

    def _check_out(self):
        closed_message = f"{self.name}: the MariaDB pool is closed because the service is stopping"
        if self._closed:
            raise MariaDBUnavailable(closed_message)
        if not self._slots.acquire(timeout=self.settings.pool_timeout):
            raise MariaDBPoolTimeout(
                f"{self.name}: no MariaDB connection became free within {self.settings.pool_timeout:g} s "
                f"(pool_size {self.settings.pool_size}); increase pool_size or shorten the transactions"
            )
        try:
            if self._closed:
                raise MariaDBUnavailable(closed_message)
            connection = self._take_idle()
            if connection is None:
                connection = self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._in_use.add(connection)
        return connection

    def _take_idle(self):
        while self._idle:
            connection, since = self._idle.pop()
            if time.monotonic() - since < self.ping_after_idle:
                return connection
            try:
                connection.ping(reconnect=False)
            except (pymysql.err.Error, OSError) as error:
                _log.debug("%s: dropping an idle MariaDB connection that failed a ping: %s", self.name, error)
                self._close_quietly(connection)
            else:
                return connection
        return None

    def _connect(self):
        try:
            connection = pymysql.connect(**self.settings.connect_arguments())
        except pymysql.err.Error as error:
            raise MariaDBUnavailable(
                f"connection to MariaDB at {self.settings.address} failed: {error}"
            ) from error
        _log.debug(
            "%s: opened MariaDB connection %s to %s", self.name, connection.thread_id(), self.settings.address
        )
        return connection

    def _roll_back(self, connection) -> bool:
        """Roll back after an error and return whether the connection is still usable."""
        try:
            connection.rollback()
        except Exception as error:  # the original error is re-raised by the caller
            _log.debug("%s: rollback failed, discarding the MariaDB connection: %s", self.name, error)
            return False
        return connection.open

    def _check_in(self, connection, reusable: bool) -> None:
        in_pool = connection in self._in_use
        self._in_use.discard(connection)
        if reusable and in_pool and connection.open and not self._closed:
            self._idle.append((connection, time.monotonic()))
        else:
            self._close_quietly(connection)
        self._slots.release()

    def _close_quietly(self, connection) -> None:
        if not connection.open:
            return
        try:
            connection.close()
        except Exception as error:  # closing is best effort; the socket is dropped either way
            _log.debug("%s: closing a MariaDB connection failed: %s", self.name, error)


class MariaDB(DependencyProvider):
    """A pool of MariaDB connections that lives as long as the container.

    ``section`` names the config mapping with these keys:

    - ``dsn``: ``mysql://user@host:port/database``, without a password;
    - ``password_secret``: optional name of the secret with the password
      (see :func:`services.common.secrets.read_secret`); when that secret
      is not set, the connection has no password;
    - ``pool_size``: maximum open connections (default 5);
    - ``connect_timeout``, ``read_timeout``, ``write_timeout``: socket
      timeouts in seconds (defaults 5, 30, 30);
    - ``pool_timeout``: seconds a worker waits for a free connection
      before :class:`MariaDBPoolTimeout` (default 10).

    Connections use utf8mb4 with autocommit off. Workers get the
    :class:`MariaDBPool`::

        with self.db.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT value FROM constants WHERE name = %s", (name,))

    Setup raises ConfigurationError for a bad section or a missing secret;
    start opens no connection.
    """

    def __init__(self, section: str):
        self.section = section
        self.settings = None
        self.pool = None

    def setup(self):
        self.settings = MariaDBSettings.from_config(self.container.config, self.section)

    def start(self):
        name = f"{self.container.service_name}.{self.attr_name}"
        self.pool = MariaDBPool(self.settings, name)
        _log.debug(
            "%s: MariaDB pool for %s, up to %d connections",
            name, self.settings.address, self.settings.pool_size,
        )

    def stop(self):
        self._close()

    def kill(self):
        try:
            self._close()
        except Exception:  # kill must not raise; the container is going down anyway
            _log.exception("closing the MariaDB pool of %s failed", self.section)

    def get_dependency(self, worker_ctx):
        return self.pool

    def _close(self):
        pool, self.pool = self.pool, None
        if pool is not None:
            closed = pool.close()
            _log.debug("%s: closed %d MariaDB connection(s)", pool.name, closed)
