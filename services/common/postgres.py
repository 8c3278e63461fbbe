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


class Postgres(DependencyProvider):
    """A connection pool opened at container start and closed at stop or kill.

    ``section`` names the config mapping that contains ``dsn``, and optionally
    ``pool_min``, ``pool_max`` and ``timeout`` (seconds to wait for a free
    connection). Workers get the pool itself: ``with self.db.connection() as
    conn`` borrows a connection and commits or rolls back on exit.
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
        self.timeout = float(settings.get("timeout", 10))

    def start(self):
        self.pool = ConnectionPool(
            self.dsn,
            min_size=self.pool_min,
            max_size=self.pool_max,
            timeout=self.timeout,
            open=False,
            name=f"{self.container.service_name}-{self.section}",
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
            self.pool.close()
            self.pool = None

    def get_dependency(self, worker_ctx):
        return self.pool
