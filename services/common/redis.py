"""Redis dependency provider for Nameko services.

redis-py is pure Python and waits on sockets and on its pool's
``queue.LifoQueue``, both of which eventlet's monkey patch makes green, so
a worker waiting for Redis (a ``BLPOP``, a full pool) blocks only itself.
"""

from dataclasses import dataclass, field
from logging import getLogger
from urllib.parse import parse_qs, urlsplit

import redis
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider

from services.common.config import section as config_section
from services.common.secrets import read_secret


_log = getLogger(__name__)

URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_POOL_TIMEOUT = 10.0
#: Seconds a connection may rest in the pool before redis-py pings it on its
#: next use. The server may have dropped it meanwhile (``timeout``, a restart).
HEALTH_CHECK_INTERVAL = 30


class RedisUnavailable(Exception):
    """Redis cannot be used now: it is down, or it rejected the connection or the password."""


@dataclass(frozen=True)
class RedisSettings:
    """A Redis config section, checked, with the password read from its secret."""

    url: str
    password: str | None = field(repr=False)
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    pool_timeout: float = DEFAULT_POOL_TIMEOUT

    @classmethod
    def from_config(cls, config: dict, section: str) -> "RedisSettings":
        """Read and check the config section ``section``; raise ConfigurationError on a bad value."""
        settings = config_section(config, section)
        url = settings.get("url")
        if not url:
            raise ConfigurationError(f"config {section}.url is missing: set it to redis://host:port/db")
        _check_url(str(url), section)

        # The named secret may be unset: the connection then sends no password.
        secret_name = settings.get("password_secret")
        password = read_secret(secret_name, required=False) if secret_name else None
        if secret_name and password is None:
            _log.info("secret %s is not set; connecting to Redis without a password", secret_name)

        return cls(
            url=str(url),
            password=password,
            socket_timeout=_positive(settings, section, "socket_timeout", DEFAULT_SOCKET_TIMEOUT),
            max_connections=_positive(settings, section, "max_connections", DEFAULT_MAX_CONNECTIONS, int),
            pool_timeout=_positive(settings, section, "pool_timeout", DEFAULT_POOL_TIMEOUT),
        )


def _check_url(url: str, section: str) -> None:
    # Messages never quote the URL, because it may contain a password.
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ConfigurationError(
            f"config {section}.url must start with redis://, rediss:// or unix://, "
            f"got {parts.scheme or 'no scheme'}"
        )
    query = parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        raise ConfigurationError(
            f"config {section}.url contains a password: remove it and name a secret in password_secret"
        )
    if parts.scheme != "unix":
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ConfigurationError(f"config {section}.url must end with a database number, as in /0")


def _positive(settings: dict, section: str, key: str, default, kind=float):
    value = settings.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"config {section}.{key} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigurationError(f"config {section}.{key} must be positive, got {value!r}")
    return number


def describe(client: redis.Redis) -> str:
    """Return ``host:port/db`` (or the socket path) of a client, for messages and logs."""
    arguments = client.connection_pool.connection_kwargs
    if "path" in arguments:
        return f"{arguments['path']}/{arguments.get('db', 0)}"
    return f"{arguments.get('host', 'localhost')}:{arguments.get('port', 6379)}/{arguments.get('db', 0)}"


def ping(client: redis.Redis) -> None:
    """Send PING through ``client``; raise RedisUnavailable when the PING fails.

    Meant for readiness checks. It waits at most the client's socket
    timeout, plus its pool timeout when every connection is in use.
    """
    try:
        client.ping()
    except redis.RedisError as error:
        raise RedisUnavailable(f"PING to Redis at {describe(client)} failed: {error}") from error


class Redis(DependencyProvider):
    """A redis-py client whose connection pool lives as long as the container.

    ``section`` names the config mapping with these keys:

    - ``url``: ``redis://host:port/db`` (or ``rediss://``, ``unix://``),
      without a password;
    - ``password_secret``: optional name of the secret with the password
      (see :func:`services.common.secrets.read_secret`); when that secret
      is not set, the connection sends no password;
    - ``socket_timeout``: seconds to connect and to wait for each reply
      (default 5);
    - ``max_connections``: maximum open connections (default 10);
    - ``pool_timeout``: seconds a worker waits for a free connection before
      ``redis.ConnectionError("No connection available.")`` (default 10).

    Workers share one ``redis.Redis`` client, because redis-py's pool is
    safe to share. Replies are bytes, as redis-py returns by default.
    Commands are not retried: a dropped connection raises
    ``redis.ConnectionError`` once and is replaced on the next command.
    Each connection names itself ``<service>.<attribute>`` in ``CLIENT LIST``.

    NOTE: a blocking command (``BLPOP`` and the like) must time out sooner
    than ``socket_timeout``, or redis-py raises ``redis.TimeoutError``.
    """

    def __init__(self, section: str):
        self.section = section
        self.settings = None
        self.client = None

    def setup(self):
        self.settings = RedisSettings.from_config(self.container.config, self.section)

    def start(self):
        settings = self.settings
        pool = redis.BlockingConnectionPool.from_url(
            settings.url,
            password=settings.password,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.socket_timeout,
            max_connections=settings.max_connections,
            timeout=settings.pool_timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            client_name=f"{self.container.service_name}.{self.attr_name}",
        )
        self.client = redis.Redis(connection_pool=pool)
        _log.debug(
            "%s.%s: Redis pool for %s, up to %d connections",
            self.container.service_name, self.attr_name, describe(self.client), settings.max_connections,
        )

    def stop(self):
        self._close()

    def kill(self):
        try:
            self._close()
        except Exception:  # kill must not raise; the container is going down anyway
            _log.exception("closing the Redis pool of %s failed", self.section)

    def get_dependency(self, worker_ctx):
        return self.client

    def _close(self):
        client, self.client = self.client, None
        if client is not None:
            client.connection_pool.disconnect(inuse_connections=True)
