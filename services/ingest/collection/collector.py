"""The ``Collector`` dependency of the ingest service: jobs, bots and the forward schedule.

Jobs live in PostgreSQL. In each game server's collection, one service
process at a time runs the jobs: the one that holds a session-level
advisory lock, which PostgreSQL frees when that process dies. Its
supervisor thread takes up every running job (new ones, and those a
stopped process left behind), passes abort requests on, and starts the
scheduled forward job. Other processes only create, list and abort jobs in
the database.
"""

import logging
import threading
import time
from datetime import datetime, timezone
from logging import getLogger

import eventlet
import eventlet.patcher
import psycopg
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider
from psycopg_pool import ConnectionPool

from services.common.errors import CollectionDisabled, CollectJobNotFound, CollectJobRunning
from services.ingest.collection.fetcher import BotPool, Fetcher, remove_stale_temporary_files
from services.ingest.collection.job_request import (
    check_job_id,
    check_list_arguments,
    invalid,
    parse_job_request,
)
from services.ingest.collection.jobs import DATABASE_ERRORS, Claims, JobRun
from services.ingest.collection.settings import MAX_BATTLE_ID, CollectSettings
from services.ingest.collection.store import CollectStore, JobAlreadyRunning
from services.ingest.dependencies import IngestRunner, RepeatedLog, RunnerSettings
from services.ingest.exceptions import DatabaseUnavailable, IngestFailed, RunInProgress


_log = getLogger(__name__)

#: First key of the advisory lock that marks the process running a server's
#: jobs; the second is hashtext(server). Two-key locks never collide with the
#: one-key lock of ingestion runs.
COLLECTOR_LOCK_CLASS = 0x545A52
#: Temporary files of a process that died mid-write are removed at start when older than this.
STALE_TEMPORARY_SECONDS = 3600
RATE_WINDOW_SECONDS = 60.0
LAST_ERRORS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe_job(job: dict) -> dict:
    """Return a job as the RPC methods return it."""
    counts = {name: job[name] for name in ("fetched", "not_found", "failed", "mismatch", "skipped")}
    start, end, cursor = job["start_id"], job["end_id"], job["cursor_id"]
    total = remaining = None
    if end is not None:
        if job["direction"] == "backward":
            total, remaining = start - end + 1, max(0, cursor - end + 1)
        else:
            total, remaining = end - start + 1, max(0, end - cursor + 1)
    if job["status"] != "running":
        remaining = 0 if total is not None else None
    return {
        "id": job["id"],
        "server": job["server"],
        "direction": job["direction"],
        "trigger": job["trigger"],
        "status": job["status"],
        "abort_requested": job["abort_requested"],
        "start": start,
        "end": end,
        "count": job["requested_count"],
        "cursor": cursor,
        "counts": counts,
        "processed": sum(counts.values()),
        "total": total,
        "remaining": remaining,
        "waiting_until": _iso(job["waiting_until"]),
        "error": job["error"],
        "created_at": _iso(job["created_at"]),
        "updated_at": _iso(job["updated_at"]),
        "finished_at": _iso(job["finished_at"]),
    }


class Collector(DependencyProvider):
    """Runs battle-log collection jobs for the ingest service.

    Settings come from the COLLECT section and the bots secret, the drop
    folder, database and server name from INGEST. Without bots, collection
    is off: the RPC methods still list and abort stored jobs.
    """

    def setup(self):
        config = self.container.config
        self.settings = CollectSettings.from_config(config)
        self.runner_settings = RunnerSettings.from_config(config)
        self.server = self.runner_settings.server
        if self.settings.enabled:
            unpatched = [name for name in ("socket", "thread") if not eventlet.patcher.is_monkey_patched(name)]
            if unpatched:
                # The bot sessions use blocking sockets and threads, which
                # would block the whole service unless eventlet patched them.
                raise ConfigurationError(
                    f"battle-log collection needs eventlet's monkey patching of {', '.join(unpatched)};"
                    " run the service with `nameko run`, which applies it"
                )
        self.ingest_runner = next(
            (dependency for dependency in self.container.dependencies if isinstance(dependency, IngestRunner)), None
        )
        self.repeats = RepeatedLog(_log)
        self.pool = None
        self.bots = None
        self.runs: dict[int, JobRun] = {}
        self._threads: list = []
        self._lock_connection = None
        self._lock_held = False
        self._last_schedule = None
        self._ingest_pending = False
        self._stopping = False
        self._wake = threading.Event()

    def start(self):
        self.pool = ConnectionPool(
            self.runner_settings.dsn,
            min_size=1,
            max_size=len(self.settings.bots) + 4,
            timeout=10,
            open=False,
            name=f"{self.container.service_name}-collect",
            kwargs={"connect_timeout": 5},
        )
        self.pool.open(wait=False)
        self.store = CollectStore(self.pool)
        if not self.settings.enabled:
            return
        drop_dir = self.runner_settings.drop_dir
        drop_dir.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporary_files(drop_dir, STALE_TEMPORARY_SECONDS)
        if removed:
            _log.warning("removed %d temporary collection file(s) left in %s", removed, drop_dir)
        self.bots = BotPool(self.settings)
        self.fetcher = Fetcher(self.settings, drop_dir)
        self.claims = Claims()
        _log.info(
            "battle-log collection on for server %s with bots %s at %s:%d%s",
            self.server, ", ".join(account.login for account in self.settings.bots),
            self.settings.game_host, self.settings.game_port,
            "; the forward job is scheduled" if self.settings.auto_forward else "",
        )
        self._threads.append(eventlet.spawn(self._supervise))

    def stop(self):
        self._shut_down()

    def kill(self):
        try:
            self._shut_down()
        except Exception:  # kill must not raise; the process is going down
            _log.exception("stopping battle-log collection failed")

    def _shut_down(self):
        self._stopping = True
        for run in list(self.runs.values()):
            run.kill()
        for thread in self._threads:
            thread.kill()
        self._threads = []
        if self.bots is not None:
            self.bots.close()
        self._close_lock_connection()
        if self.pool is not None:
            self.pool.close(timeout=5)
            self.pool = None

    def get_dependency(self, worker_ctx):
        return self

    # -- the RPC methods' work

    def start_job(self, params, trigger: str = "rpc") -> dict:
        """Create a running job from ``{"direction", "start", "end", "count"}`` and return it.

        The process that runs jobs takes it up within a supervisor interval
        (at once when that is this process).
        """
        if not self.settings.enabled:
            raise CollectionDisabled(
                f"battle-log collection is off: set the secret {self.settings.bots_secret} to the bot accounts"
            )
        request = parse_job_request(params, self.settings.floor)
        with self._database("start a collection job"):
            start, end = self._resolve_bounds(request)
            try:
                job = self.store.create_job(self.server, request.direction, trigger, start, end, request.count)
            except JobAlreadyRunning as error:
                running = self.store.running_job(self.server, request.direction)
                running_id = running["id"] if running else 0
                raise CollectJobRunning(str(error), params={"direction": request.direction,
                                                            "job_id": running_id}) from None
        _log.info(
            "collection job %d created (%s, %s): battles %d to %s", job["id"], request.direction, trigger,
            start, end if end is not None else "the newest",
        )
        self._wake.set()
        return describe_job(job)

    def _resolve_bounds(self, request) -> tuple[int, int | None]:
        floor = self.settings.floor
        lowest, highest = self.store.known_bounds(self.server)
        start, end, count = request.start, request.end, request.count

        if request.direction == "forward":
            if start is None:
                start = highest + 1 if highest is not None else self.settings.forward_start
            if start is None:
                raise invalid({"start": "collect.no_start"}, floor)
            if count is not None:
                end = start + count - 1
            if end is not None and end < start:
                raise invalid({"end": "collect.end_before_start"}, floor)

        elif request.direction == "backward":
            if start is None:
                if lowest is None:
                    raise invalid({"start": "collect.no_start"}, floor)
                start = lowest - 1
                if start < floor:
                    raise invalid({"start": "collect.history_done"}, floor)
            if count is not None:
                end = max(floor, start - count + 1)
            if end is None:
                end = floor
            if end > start:
                raise invalid({"end": "collect.backward_end"}, floor)

        else:
            if start is None:
                raise invalid({"start": "field.required"}, floor)
            if end is None and count is None:
                raise invalid({"end": "collect.range_end"}, floor)
            if count is not None:
                end = start + count - 1
            if end < start:
                raise invalid({"end": "collect.end_before_start"}, floor)

        if end is not None and end > MAX_BATTLE_ID:
            raise invalid({"count" if count is not None else "end": "collect.battle_id"}, floor)
        return start, end

    def progress(self, job_id) -> dict:
        """Return a job with its counts, rate (ids a second over the last minute), ETA and latest errors."""
        job_id = check_job_id(job_id)
        with self._database("read a collection job"):
            job = self.store.job(job_id)
            if job is None:
                raise CollectJobNotFound(f"no collection job {job_id}", params={"job_id": job_id})
            result = describe_job(job)
            result["rate"] = result["eta_seconds"] = None
            if job["status"] == "running":
                since = job["resumed_at"] or job["created_at"]
                window = min(RATE_WINDOW_SECONDS, (datetime.now(timezone.utc) - since).total_seconds())
                if window >= 1:
                    rate = self.store.recorded_since(job_id, window) / window
                    result["rate"] = round(rate, 2)
                    if rate > 0 and result["remaining"] is not None and job["waiting_until"] is None:
                        result["eta_seconds"] = round(result["remaining"] / rate)
            result["last_errors"] = [
                {**row, "updated_at": _iso(row["updated_at"])} for row in self.store.recent_errors(job_id, LAST_ERRORS)
            ]
        return result

    def list_jobs(self, limit=20, status=None) -> list[dict]:
        limit, status = check_list_arguments(limit, status)
        with self._database("list collection jobs"):
            return [describe_job(job) for job in self.store.jobs(self.server, limit, status)]

    def abort(self, job_id) -> dict:
        """Ask a running job to stop between ids and return it; an ended job is returned as it is."""
        job_id = check_job_id(job_id)
        with self._database("abort a collection job"):
            job = self.store.request_abort(job_id)
            if job is None:
                raise CollectJobNotFound(f"no collection job {job_id}", params={"job_id": job_id})
        run = self.runs.get(job_id)
        if run is not None:
            run.abort()
        elif job["status"] == "running":
            _log.info("collection job %d: abort requested", job_id)
            self._wake.set()
        return describe_job(job)

    def _database(self, action: str):
        return _DatabaseErrors(action)

    # -- the supervisor

    def _supervise(self):
        while not self._stopping:
            try:
                self._supervise_once()
            except DATABASE_ERRORS as error:
                self.repeats.log(logging.ERROR, "collection supervisor: the database failed: %s", error)
            except Exception:  # noqa: BLE001 -- the supervisor must keep going; logged with its traceback
                _log.exception("collection supervisor: unexpected error")
            self._wake.wait(self.settings.supervise_interval)
            self._wake.clear()

    def _supervise_once(self):
        if not self._hold_lock():
            return
        running = self.store.running_jobs(self.server)
        for job in running:
            run = self.runs.get(job["id"])
            if run is not None and run.running:
                if job["abort_requested"]:
                    run.abort()
                continue
            if job["abort_requested"]:
                self.store.finish_job(job["id"], "aborted")
                _log.info("collection job %d aborted before it was taken up", job["id"])
                continue
            self._start_run(job)
        if self.settings.auto_forward:
            self._schedule_forward(running)

    def _start_run(self, job: dict) -> None:
        _lowest, highest = self.store.known_bounds(self.server)
        run = JobRun(
            job, settings=self.settings, server=self.server, store=self.store, bots=self.bots,
            fetcher=self.fetcher, claims=self.claims, newest=highest,
            on_fetched_batch=self.request_ingest, on_end=self._run_ended,
        )
        self.runs[job["id"]] = run
        run.start()

    def _run_ended(self, run: JobRun, status: str | None) -> None:
        if self.runs.get(run.job_id) is run:
            del self.runs[run.job_id]
        if status is None and not self._stopping:
            # Left running in the database; the next supervisor pass takes it
            # up again, which gives a failing database a pause between tries.
            self.repeats.log(logging.WARNING, "collection job %d stopped; it resumes on the next pass", run.job_id)

    def _schedule_forward(self, running: list[dict]) -> None:
        if any(job["direction"] == "forward" for job in running):
            return
        now = time.monotonic()
        if self._last_schedule is not None and now - self._last_schedule < self.settings.schedule_interval:
            return
        self._last_schedule = now
        try:
            job = self.start_job({"direction": "forward"}, trigger="schedule")
        except CollectJobRunning:
            return
        except DatabaseUnavailable as error:
            self.repeats.log(logging.ERROR, "scheduled forward job not started: %s", error)
            return
        except Exception as error:  # noqa: BLE001 -- InvalidArgument when no start is known; logged, tried again later
            self.repeats.log(
                logging.WARNING,
                "scheduled forward job not started: %s; set COLLECT.forward_start or start a job with a start id",
                error,
            )
            return
        self._start_run(self.store.job(job["id"]))

    def _hold_lock(self) -> bool:
        """Take or keep the lock that makes this process run the server's jobs; return whether it is held."""
        connection = self._lock_connection
        if connection is not None and self._lock_held:
            try:
                connection.execute("SELECT 1")
                return True
            except psycopg.Error as error:
                _log.error("collection: lost the database connection that holds the job lock (%s);"
                           " stopping this process's jobs", error)
                for run in list(self.runs.values()):
                    run.kill()
                self._close_lock_connection()
                return False
        if connection is None:
            connection = psycopg.connect(self.runner_settings.dsn, autocommit=True, connect_timeout=5)
            self._lock_connection = connection
        held = connection.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (COLLECTOR_LOCK_CLASS, self.server)
        ).fetchone()[0]
        if held:
            self._lock_held = True
            _log.info("this process runs the collection jobs of server %s", self.server)
        else:
            self.repeats.log(logging.INFO, "another process runs the collection jobs of server %s", self.server)
        return held

    def _close_lock_connection(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        self._lock_held = False
        if connection is not None:
            try:
                connection.close()
            except psycopg.Error:
                pass

    # -- loading fetched logs

    def request_ingest(self) -> None:
        """Start an ingestion run soon, once the new files are older than the drop folder's minimum age."""
        if self.ingest_runner is None or self._ingest_pending or self._stopping:
            return
        self._ingest_pending = True
        self._threads = [thread for thread in self._threads if not thread.dead]
        self._threads.append(eventlet.spawn(self._ingest_soon))

    def _ingest_soon(self) -> None:
        eventlet.sleep(self.runner_settings.min_age + 0.5)
        self._ingest_pending = False
        try:
            summary = self.ingest_runner.run("collect")
        except RunInProgress:
            _log.info("an ingestion run is in progress; the timer loads the collected logs")
        except IngestFailed as error:
            _log.error("ingesting collected logs failed: %s", error)
        else:
            _log.info("ingested collected logs: %s", summary)


class _DatabaseErrors:
    """Turns a database failure during an RPC into DatabaseUnavailable."""

    def __init__(self, action: str):
        self.action = action

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is not None and isinstance(error, DATABASE_ERRORS):
            _log.error("cannot %s: the database failed: %s", self.action, error)
            raise DatabaseUnavailable(f"the collection database did not answer: {error}") from None
        return False
