"""PostgreSQL dependency provider for Nameko services.

psycopg runs its pure-Python implementation inside services (``services``
sets ``PSYCOPG_IMPL=python`` before anything imports psycopg): its socket
waits then go through eventlet's patched ``select``, so slow queries in
concurrent workers overlap instead of blocking the hub.
"""

from logging import getLogger

from nameko.extensions import DependencyProvider
from psycopg_pool import ConnectionPool

from services.common.config import section as config_section


_log = getLogger(__name__)

DEFAULT_POOL_TIMEOUT = 10.0
#: Seconds to wait for PostgreSQL to accept one connection.
CONNECT_TIMEOUT = 5
#: Seconds that stop and kill wait for the pool's background tasks.
CLOSE_TIMEOUT = 5.0


class Postgres(DependencyProvider):
    """A connection pool opened at container start and closed at stop or kill.

    ``section`` names the config mapping that contains ``dsn``, and optionally
    ``pool_min``, ``pool_max``, ``pool_timeout`` (seconds a worker waits
    for a connection before ``psycopg_pool.PoolTimeout``; default 10) and
    ``statement_timeout`` (milliseconds a statement may run before
    PostgreSQL cancels it; default: the server's setting).
    Workers get the pool itself: ``with self.db.connection() as conn``
    borrows a connection and commits or rolls back on exit.
    """

    def __init__(self, section: str):
        self.section = section
        self.pool = None

    def setup(self):
        settings = config_section(self.container.config, self.section)
        self.dsn = settings.get("dsn")
        if not self.dsn:
            raise ValueError(f"config {self.section}.dsn is missing: set the PostgreSQL connection URI")
        self.pool_min = int(settings.get("pool_min", 1))
        self.pool_max = int(settings.get("pool_max", 4))
        self.timeout = float(settings.get("pool_timeout", DEFAULT_POOL_TIMEOUT))
        self.connect_kwargs = {"connect_timeout": CONNECT_TIMEOUT}
        statement_timeout = settings.get("statement_timeout")
        if statement_timeout not in (None, ""):
            try:
                milliseconds = int(statement_timeout)
            except (TypeError, ValueError):
                milliseconds = -1
            if milliseconds < 0:
                raise ValueError(
                    f"config {self.section}.statement_timeout must be a whole number of milliseconds, "
                    f"got {statement_timeout!r}"
                )
            self.connect_kwargs["options"] = f"-c statement_timeout={milliseconds}"

    def start(self):
        self.pool = ConnectionPool(
            self.dsn,
            min_size=self.pool_min,
            max_size=self.pool_max,
            timeout=self.timeout,
            open=False,
            name=f"{self.container.service_name}-{self.section}",
            kwargs=self.connect_kwargs,
        )
        self.pool.open(wait=False)

    def stop(self):
        self._close()

    def kill(self):
        try:
            self._close()
        except Exception:  # kill must not raise; the process is going down
            _log.exception("closing the %s pool failed", self.section)

    def _close(self):
        if self.pool is not None:
            self.pool.close(timeout=CLOSE_TIMEOUT)
            self.pool = None

    def get_dependency(self, worker_ctx):
        return self.pool
