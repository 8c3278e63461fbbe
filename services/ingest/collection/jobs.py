"""One collection job running in this process: dispatching ids to bots and recording outcomes."""

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from logging import getLogger

import eventlet
import psycopg
from eventlet.queue import Empty, LightQueue
from psycopg_pool import PoolTimeout

from services.ingest.collection.fetcher import BotPool, BotRejected, Fetcher, Interrupted
from services.ingest.collection.plan import DONE, FETCH, HEAD, ForwardPlan, IdPlan
from services.ingest.collection.settings import CollectSettings
from services.ingest.collection.store import CollectStore, StoredStatus


_log = getLogger(__name__)

DATABASE_ERRORS = (psycopg.Error, PoolTimeout)


class Claims:
    """Battle ids being processed in this process, so that no two jobs request one id at once."""

    def __init__(self):
        self._held: dict[tuple[str, int], threading.Event] = {}

    @contextmanager
    def hold(self, server: str, battle_id: int, stop: threading.Event):
        key = (server, battle_id)
        # Green threads switch only at I/O or waits, so nothing runs between
        # the check and the claim below.
        while key in self._held:
            self._held[key].wait(0.5)
            if stop.is_set():
                raise Interrupted(f"battle {battle_id}: the job stopped while another job held the id")
        released = threading.Event()
        self._held[key] = released
        try:
            yield
        finally:
            del self._held[key]
            released.set()


@dataclass(frozen=True)
class Result:
    """What a fetcher reports back to its job."""

    kind: str  # "done", "give_back" or "database_error"
    status: str | None = None
    skipped: bool = False
    detail: str = ""


def should_skip(previous: StoredStatus, job_id: int, force: bool) -> bool:
    """Return whether an id with a stored status needs no request.

    Fetched ids are never requested again, nor not_found ones unless
    ``force`` (a forward job at the newest battles). Failed and mismatched
    ids are requested again by a new job, but not by the job that recorded
    them when it resumes.
    """
    if previous.status == "fetched":
        return True
    if previous.status == "not_found":
        return not force
    return previous.job_id == job_id


class JobRun:
    """Runs one job until it ends, is aborted, or this process stops running it.

    One green thread dispatches ids from the job's plan, at most one per
    usable bot at a time; fetcher green threads request them and record the
    outcomes. The cursor is stored after every outcome, and the abort flag
    is read back with it.
    """

    def __init__(self, job: dict, *, settings: CollectSettings, server: str, store: CollectStore, bots: BotPool,
                 fetcher: Fetcher, claims: Claims, newest: int | None, on_fetched_batch, on_end):
        self.job = job
        self.job_id = job["id"]
        self.settings = settings
        self.server = server
        self.store = store
        self.bots = bots
        self.fetcher = fetcher
        self.claims = claims
        self.newest = newest
        self.on_fetched_batch = on_fetched_batch
        self.on_end = on_end
        #: Set on abort, on failure and when this process stops the job; fetchers stop between ids.
        self.stop = threading.Event()
        self.aborted = False
        self.failure: str | None = None
        self.thread = None
        self._fetchers: set = set()
        self._completions: LightQueue = LightQueue()
        self._in_flight = 0
        self._fetched_unloaded = 0
        self._consecutive_failures = 0

    @property
    def running(self) -> bool:
        return self.thread is not None and not self.thread.dead

    def start(self) -> None:
        self.thread = eventlet.spawn(self._run)

    def abort(self) -> None:
        if not self.aborted:
            _log.info("collection job %d: abort requested; stopping after the ids in flight", self.job_id)
        self.aborted = True
        self.stop.set()

    def kill(self) -> None:
        """Stop at once; the job stays running in the database and resumes in the next process."""
        self.stop.set()
        if self.thread is not None:
            self.thread.kill()

    # -- the dispatching thread

    def make_plan(self) -> IdPlan:
        job = self.job
        if job["direction"] == "forward":
            return ForwardPlan(job["cursor_id"], job["end_id"], self.settings.head_misses, self.newest)
        step = -1 if job["direction"] == "backward" else 1
        return IdPlan(job["cursor_id"], job["end_id"], step)

    def _run(self) -> None:
        plan = self.make_plan()
        ended = None
        try:
            self.store.mark_resumed(self.job_id)
            _log.info(
                "collection job %d (%s) running from battle %d with %d bot(s)",
                self.job_id, self.job["direction"], plan.cursor, self.bots.usable,
            )
            ended = self._dispatch(plan)
            self._drain(plan)
            if ended is None:
                ended = "aborted" if self.aborted else "failed" if self.failure else None
            if ended is not None:
                self.store.finish_job(self.job_id, ended, self.failure if ended == "failed" else None)
                self._log_end(ended)
        except DATABASE_ERRORS as error:
            ended = None
            _log.error(
                "collection job %d: the database failed (%s); the job stays running and resumes later",
                self.job_id, error,
            )
        except Exception:
            ended = None
            _log.exception("collection job %d: unexpected error; the job stays running and resumes later",
                           self.job_id)
        finally:
            for fetcher in list(self._fetchers):
                fetcher.kill()
            if self._fetched_unloaded:
                self.on_fetched_batch()
            self.on_end(self, ended)

    def _dispatch(self, plan: IdPlan) -> str | None:
        """Hand out ids until the plan is done (returns "finished") or the job stops (returns None)."""
        while not self.stop.is_set():
            if self._in_flight >= max(1, self.bots.usable):
                self._take_completion(plan)
                continue
            action = plan.next_action()
            if action.kind == FETCH:
                self._in_flight += 1
                self._fetchers.add(eventlet.spawn(self._fetch, action.battle_id, action.force))
            elif action.kind == HEAD:
                self._wait_at_head(plan)
            elif action.kind == DONE:
                return "finished"
            else:
                self._take_completion(plan)
        return None

    def _drain(self, plan: IdPlan) -> None:
        """Wait for the ids in flight, which finish or give up between attempts."""
        while self._in_flight:
            self._take_completion(plan)

    def _take_completion(self, plan: IdPlan) -> None:
        try:
            battle_id, result = self._completions.get(timeout=1.0)
        except Empty:
            return
        self._in_flight -= 1
        if result.kind == "done":
            plan.done(battle_id, result.status)
            self._count(result)
        elif result.kind == "give_back":
            plan.give_back(battle_id)
            if not self.bots.usable and not self.failure:
                self.failure = "every bot account was rejected at LOGIN; check the bots secret"
                self.stop.set()
        else:
            plan.give_back(battle_id)
            raise psycopg.OperationalError(result.detail)
        if self.store.save_cursor(self.job_id, plan.resume_id):
            self.abort()

    def _count(self, result: Result) -> None:
        if result.skipped:
            return
        if result.status == "fetched":
            self._fetched_unloaded += 1
        if result.status != "failed":
            self._consecutive_failures = 0
            return
        self._consecutive_failures += 1
        limit = self.settings.max_consecutive_failures
        if self._consecutive_failures >= limit and not self.failure:
            self.failure = f"{limit} battle ids in a row failed; the last one: {result.detail}"
            _log.error("collection job %d: %s", self.job_id, self.failure)
            self.stop.set()

    def _wait_at_head(self, plan: ForwardPlan) -> None:
        seconds = self.settings.poll_interval
        until = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        if self.store.save_cursor(self.job_id, plan.resume_id, until):
            self.abort()
            return
        _log.info(
            "collection job %d: no battle from %d on yet; looking again in %.0f s",
            self.job_id, plan.resume_id, seconds,
        )
        if self._fetched_unloaded:
            self._fetched_unloaded = 0
            self.on_fetched_batch()
        if self.stop.wait(seconds):
            return
        plan.reprobe()
        if self.store.save_cursor(self.job_id, plan.resume_id):
            self.abort()

    def _log_end(self, status: str) -> None:
        job = self.store.job(self.job_id) or {}
        counts = ", ".join(f"{name} {job.get(name, 0)}" for name in ("fetched", "not_found", "failed", "mismatch",
                                                                     "skipped"))
        if status == "failed":
            _log.error("collection job %d failed: %s (%s)", self.job_id, self.failure, counts)
        else:
            _log.info("collection job %d %s: %s", self.job_id, status, counts)

    # -- fetcher threads

    def _fetch(self, battle_id: int, force: bool) -> None:
        try:
            result = self._process(battle_id, force)
        except Interrupted:
            result = Result("give_back")
        except DATABASE_ERRORS as error:
            result = Result("database_error", detail=str(error))
        except Exception as error:  # noqa: BLE001 -- reported to the job, which keeps the id for later
            _log.exception("collection job %d: battle %d: unexpected error", self.job_id, battle_id)
            result = Result("give_back", detail=str(error))
        finally:
            self._fetchers.discard(eventlet.getcurrent())
        self._completions.put((battle_id, result))

    def _process(self, battle_id: int, force: bool) -> Result:
        with self.claims.hold(self.server, battle_id, self.stop):
            previous = self.store.battle_status(self.server, battle_id)
            if previous is not None and should_skip(previous, self.job_id, force):
                if previous.job_id != self.job_id:
                    self.store.record_skip(self.job_id)
                return Result("done", previous.status, skipped=True)

            bot = self.bots.take(self.stop.is_set)
            try:
                outcome = self.fetcher.fetch(bot, battle_id, self.stop)
            except BotRejected as error:
                bot.usable = False
                _log.error("collection job %d: %s; the bot is set aside until the service restarts",
                           self.job_id, error)
                return Result("give_back", detail=str(error))
            finally:
                self.bots.release(bot)
            self.store.record(self.server, battle_id, self.job_id, outcome, previous)
            return Result("done", outcome.status, detail=outcome.detail or outcome.reason or "")
