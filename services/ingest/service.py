"""The ``ingest`` service: loads battle logs dropped into a folder, on a timer."""

import logging
import os
from logging import getLogger

import psycopg
from nameko.rpc import rpc
from psycopg_pool import PoolTimeout

from services.common.postgres import Postgres
from services.common.timer import config_timer
from services.ingest.dependencies import CONFIG_SECTION, IngestRunner
from services.ingest.exceptions import DatabaseUnavailable, IngestFailed, InvalidArgument, RunInProgress


_log = getLogger(__name__)

MAX_RUNS_LISTED = 100


class IngestService:
    """Picks up new ``.tzb``/``.tzb.gz`` files in the drop folder and loads them.

    Config section ``INGEST``: ``dsn``, ``drop_dir``, ``archive_dir``,
    ``quarantine_dir``, ``server``, ``interval`` (seconds between checks),
    ``workers`` (parser processes), ``min_age`` (seconds a file must rest
    before it is picked up), ``timeout`` (seconds a run may last).
    """

    name = "ingest"

    runner = IngestRunner()
    db = Postgres(CONFIG_SECTION)

    @config_timer(CONFIG_SECTION, "interval", default=60)
    def ingest_drop_folder(self):
        if not self.runner.has_pending_files():
            return
        try:
            self.runner.run("timer")
        except RunInProgress as error:
            self.runner.repeats.log(logging.INFO, "scheduled ingestion skipped: %s", error)
        except IngestFailed as error:
            self.runner.repeats.log(logging.ERROR, "scheduled ingestion failed: %s", error)
        else:
            self.runner.repeats.reset()

    @rpc(expected_exceptions=(RunInProgress, IngestFailed))
    def run_now(self):
        """Ingest the drop folder now and wait for the run to end.

        Returns the run summary: ``{"files", "loaded", "duplicates",
        "quarantined": {reason: count}, "failed", "seconds"}``. Raises
        ``RunInProgress`` when a run is already going on and ``IngestFailed``
        when the run could not start or crashed.
        """
        return self.runner.run("rpc")

    @rpc
    def ready(self):
        """Return each backend's state: ``{"postgres": bool, "drop_dir": bool}``.

        ``drop_dir`` is True when the drop folder exists and is writable.
        """
        try:
            with self.db.connection(timeout=2) as connection:
                connection.execute("SELECT 1")
            postgres = True
        except (PoolTimeout, psycopg.Error):
            postgres = False
        drop_dir = self.runner.settings.drop_dir
        return {"postgres": postgres, "drop_dir": drop_dir.is_dir() and os.access(drop_dir, os.W_OK)}

    @rpc(expected_exceptions=(InvalidArgument, DatabaseUnavailable))
    def last_runs(self, limit=10):
        """Return the latest ``limit`` runs (1 to 100), newest first.

        Each run is a dict with ``id``, ``trigger``, ``status``, ``started_at``
        and ``finished_at`` (ISO 8601), the counts ``files``, ``loaded``,
        ``replaced``, ``duplicates``, ``quarantined`` (reason -> count),
        ``failed``, and ``seconds`` and ``error``. Raises ``InvalidArgument``
        for a bad limit and ``DatabaseUnavailable`` when PostgreSQL does not
        answer within the pool timeout.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RUNS_LISTED:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_RUNS_LISTED}, got {limit!r}")
        try:
            with self.db.connection() as connection:
                cursor = connection.execute(
                    "SELECT id, trigger, status, started_at, finished_at, files, loaded, replaced,"
                    " duplicates, quarantined, failed, seconds, error"
                    " FROM ingest_runs ORDER BY id DESC LIMIT %s",
                    (limit,),
                )
                names = [column.name for column in cursor.description]
                rows = cursor.fetchall()
        except (PoolTimeout, psycopg.OperationalError) as error:
            _log.error("last_runs: the database is unavailable: %s", error)
            raise DatabaseUnavailable(f"the ingestion database did not answer: {error}") from None
        runs = []
        for row in rows:
            run = dict(zip(names, row))
            for key in ("started_at", "finished_at"):
                if run[key] is not None:
                    run[key] = run[key].isoformat()
            runs.append(run)
        return runs
