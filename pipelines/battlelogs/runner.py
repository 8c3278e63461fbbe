"""Run an ingestion: find files, spread batches over worker processes, record the run.

One run at a time per database: a run holds a PostgreSQL session-level
advisory lock for its whole length, so the CLI and the ``ingest`` service
never load the same drop folder twice at once. Each run leaves a row in
``ingest_runs`` with its counts and status.
"""

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Callable, Iterable

from psycopg.types.json import Jsonb

from pipelines import db
from pipelines.battlelogs import marts
from pipelines.battlelogs.read import discover
from pipelines.battlelogs.settings import FileOutcome, IngestSettings, run_batch, summarize


_log = getLogger(__name__)

#: Advisory lock key that marks a running ingestion ("TZRRUN" in ASCII).
RUN_LOCK_KEY = 0x545A52_52554E

#: Seconds between progress log lines when no progress bar is shown.
PROGRESS_LOG_INTERVAL = 10.0


class RunInProgress(RuntimeError):
    """Another ingestion run holds the run lock."""


@dataclass
class RunResult:
    """The outcome of one run: its id in ``ingest_runs`` and the summary counts."""

    run_id: int
    summary: dict
    status: str


def _init_worker(log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def run_ingest(
    inputs: Iterable[Path | str],
    settings: IngestSettings,
    *,
    workers: int = 1,
    trigger: str = "cli",
    min_age: float = 0.0,
    refresh_marts: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Ingest every log file under ``inputs`` and return the run's result.

    ``workers`` > 1 parses and loads batches in that many processes (started
    with ``spawn``, so they share no state, event loop or connection with the
    caller). ``progress(done, total)`` is called after every batch.

    Raises :class:`RunInProgress` when another run holds the lock, and
    :class:`pipelines.db.SchemaOutdated` when migrations are pending.
    """
    inputs = [str(path) for path in inputs]
    started = time.monotonic()
    db.require_current_schema(settings.dsn)

    with db.connect(settings.dsn, autocommit=True) as control:
        acquired = control.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,)).fetchone()[0]
        if not acquired:
            row = control.execute(
                "SELECT id, started_at FROM ingest_runs WHERE status = 'running'"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
            since = f" (run {row[0]}, started {row[1]:%Y-%m-%d %H:%M:%S %Z})" if row else ""
            raise RunInProgress(f"another ingestion run is in progress{since}; try again when it ends")
        try:
            # Holding the lock, no other run is going on: a row still marked
            # running belongs to a process that died without recording its end.
            control.execute(
                "UPDATE ingest_runs SET status = 'failed', error = 'interrupted: the process ended"
                " before recording the outcome' WHERE status = 'running'"
            )
            run_id = control.execute(
                "INSERT INTO ingest_runs (trigger, inputs, workers) VALUES (%s, %s, %s) RETURNING id",
                (trigger, inputs, workers),
            ).fetchone()[0]
            _log.info("run %d started (%s): %s with %d worker(s)", run_id, trigger, ", ".join(inputs), workers)
            outcomes: list[FileOutcome] = []
            try:
                _process(inputs, settings, workers, run_id, min_age, progress, outcomes)
                days = sorted({day for outcome in outcomes for day in outcome.days})
                if refresh_marts and days:
                    marts.refresh(control, days)
            except BaseException as error:
                # Batches committed before the failure stay loaded; the run
                # row records them.
                description = f"{type(error).__name__}: {error}".rstrip(": ")
                _record_end(control, run_id, "failed", summarize(outcomes), started, description)
                _log.error("run %d failed after %d file(s): %s", run_id, len(outcomes), description)
                raise

            summary = summarize(outcomes)
            status = "succeeded" if not summary["quarantined"] and not summary["failed"] else "completed_with_errors"
            summary = _record_end(control, run_id, status, summary, started)
            _log.info("run %d %s: %s", run_id, status, summary)
            return RunResult(run_id=run_id, summary=summary, status=status)
        finally:
            if not control.closed:
                control.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_KEY,))


def _record_end(control, run_id, status, summary, started, error=None) -> dict:
    summary["seconds"] = round(time.monotonic() - started, 3)
    control.execute(
        "UPDATE ingest_runs SET status = %s, finished_at = now(), files = %s, loaded = %s,"
        " replaced = %s, duplicates = %s, quarantined = %s, failed = %s, seconds = %s, error = %s"
        " WHERE id = %s",
        (status, summary["files"], summary["loaded"], summary["replaced"],
         summary["duplicates"], Jsonb(summary["quarantined"]), summary["failed"],
         summary["seconds"], error and error[:1000], run_id),
    )
    return summary


def _process(inputs, settings, workers, run_id, min_age, progress, outcomes: list[FileOutcome]) -> None:
    """Ingest the files under ``inputs``, appending each batch's outcomes as it ends."""
    paths = [str(source.path) for source in discover(inputs, min_age=min_age)]
    total = len(paths)
    _log.info("run %d: %d file(s) to ingest", run_id, total)
    batches = _batches(paths, settings.batch_size)
    reporter = _ProgressReporter(run_id, total, progress)

    if workers <= 1 or len(batches) <= 1:
        _process_in_this_process(batches, settings, run_id, reporter, outcomes)
        return

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(batches)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(logging.getLogger().getEffectiveLevel(),),
    )
    try:
        futures = {pool.submit(run_batch, batch, settings, run_id): batch for batch in batches}
        for future in as_completed(futures):
            try:
                outcomes.extend(future.result())
            except BrokenProcessPool as error:
                _log.error("a worker process died; %d file(s) of its batch stay in place: %s", len(futures[future]), error)
                outcomes.extend(
                    FileOutcome(path=path, outcome="failed", reason="worker_died", detail=str(error))
                    for path in futures[future]
                )
            reporter.update(len(outcomes))
    finally:
        # On an interrupt, batches not yet started are dropped at once; the
        # ones in progress end (or roll back) in their workers.
        pool.shutdown(wait=True, cancel_futures=True)


def _process_in_this_process(batches, settings, run_id, reporter, outcomes: list[FileOutcome]) -> None:
    # Parsing holds the interpreter, while loading mostly waits on PostgreSQL
    # and gzip releases the interpreter lock, so the three stages overlap: this
    # thread prepares batch N+1 while a loader thread loads batch N and an
    # archiver thread settles batch N-1. At most three batches are in memory.
    from pipelines.battlelogs.ingest import close_connection, load_batch, prepare_batch, settle_batch

    loading = None
    settling = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader") as loader, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="archiver") as archiver:

            def hand_over(loaded_batch, future):
                nonlocal settling
                outcomes.extend(future.result())
                if settling is not None:
                    settling.result()
                settling = archiver.submit(settle_batch, loaded_batch, settings, run_id)
                reporter.update(len(outcomes))

            try:
                for batch in batches:
                    prepared = prepare_batch(batch, settings)
                    if loading is not None:
                        pending, loading = loading, None
                        hand_over(*pending)
                    loading = (prepared, loader.submit(load_batch, prepared, settings, run_id))
            finally:
                # Also on an interrupt: the batch being loaded commits anyway,
                # so its outcomes are recorded and its files settled.
                if loading is not None:
                    hand_over(*loading)
                if settling is not None:
                    settling.result()
    finally:
        close_connection()


class _ProgressReporter:
    """Calls the progress callback, or logs a line every few seconds without one."""

    def __init__(self, run_id: int, total: int, callback):
        self.run_id = run_id
        self.total = total
        self.callback = callback
        self.last_log = time.monotonic()

    def update(self, done: int) -> None:
        if self.callback is not None:
            self.callback(done, self.total)
            return
        now = time.monotonic()
        if now - self.last_log >= PROGRESS_LOG_INTERVAL or done == self.total:
            self.last_log = now
            _log.info("run %d: %d of %d file(s) done", self.run_id, done, self.total)
