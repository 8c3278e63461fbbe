"""The ``ingest`` service: loads battle logs dropped into a folder, on a timer, and collects them from the game server."""

import logging
import os
from logging import getLogger

import psycopg
from nameko.rpc import rpc
from psycopg_pool import PoolTimeout

from services.common.errors import CollectionDisabled, CollectJobNotFound, CollectJobRunning
from services.common.postgres import Postgres
from services.common.timer import config_timer
from services.ingest.collection.collector import Collector
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
    Section ``COLLECT`` and the bots secret configure battle-log collection
    (:mod:`services.ingest.collection`), whose logs land in the drop folder.
    """

    name = "ingest"

    runner = IngestRunner()
    db = Postgres(CONFIG_SECTION)
    collector = Collector()

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

    # -- battle-log collection

    @rpc(expected_exceptions=(InvalidArgument, CollectJobRunning, CollectionDisabled, DatabaseUnavailable))
    def collect_start(self, params):
        """Start a collection job and return it (see :meth:`collect_progress` for its fields).

        ``params`` is ``{"direction", "start", "end", "count"}``:
        ``forward`` from ``start`` (default: the highest fetched or loaded
        battle id + 1) following new battles, up to ``end`` or ``count``
        ids if given; ``backward`` from ``start`` (default: the lowest
        fetched or loaded id - 1) down to ``end`` (default: COLLECT.floor)
        or for ``count`` ids; ``range`` from ``start`` to ``end`` (or
        ``count`` ids). Raises InvalidArgument naming the bad fields,
        CollectJobRunning when a job of that direction runs, and
        CollectionDisabled when no bot accounts are configured.
        """
        return self.collector.start_job(params)

    @rpc(expected_exceptions=(InvalidArgument, CollectJobNotFound, DatabaseUnavailable))
    def collect_progress(self, job_id):
        """Return a job: ``id``, ``direction``, ``status`` (running, finished, aborted, failed),
        ``start``, ``end``, ``count``, ``cursor`` (the next id), ``counts`` by outcome
        (fetched, not_found, failed, mismatch, skipped), ``processed``, ``total`` and
        ``remaining`` (None when following new battles), ``rate`` (ids a second over the
        last minute), ``eta_seconds``, ``waiting_until`` (a forward job waiting for new
        battles), ``error``, timestamps, and ``last_errors`` (failed and mismatched ids).
        """
        return self.collector.progress(job_id)

    @rpc(expected_exceptions=(InvalidArgument, DatabaseUnavailable))
    def collect_jobs(self, limit=20, status=None):
        """Return the latest ``limit`` jobs (1 to 100) of this server, newest first, optionally with one ``status``."""
        return self.collector.list_jobs(limit, status)

    @rpc(expected_exceptions=(InvalidArgument, CollectJobNotFound, DatabaseUnavailable))
    def collect_abort(self, job_id):
        """Ask a running job to stop between battle ids and return it.

        The job's status turns to ``aborted`` once the ids in flight are
        done; ``abort_requested`` is true meanwhile. A job that has already
        ended is returned unchanged.
        """
        return self.collector.abort(job_id)
