"""Taking snapshots: one bot session per shop, one running snapshot per shop, on a schedule or on request.

The :class:`Snapshotter` provider keeps a :class:`~services.game.client.BotSession`
per shop for the life of the container; the session sends keep-alives
while idle and reconnects with backoff. A snapshot runs in a green thread
and reads the categories one by one, writing each as soon as it is read.
A unique index in PostgreSQL keeps one snapshot per shop running across
processes: a second request for the same shop joins the running one.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from logging import getLogger

import eventlet
import psycopg
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from psycopg_pool import ConnectionPool, PoolTimeout

from services.common.config import section as config_section
from services.common.errors import ServiceUnavailable, ShopDisabled, ShopNotFound
from services.game.client import BotSession
from services.shop import store
from services.shop.categories import CATEGORY_CODES
from services.shop.scrape import CategoryReader, SessionLost, Stopped
from services.shop.settings import CONFIG_SECTION, Shop, ShopSettings


_log = getLogger(__name__)

DATABASE_ERRORS = (psycopg.Error, PoolTimeout)
#: Seconds between two progress writes of a running snapshot.
HEARTBEAT_SECONDS = 2.0
#: Seconds that stop waits for running snapshots to notice the stop.
STOP_WAIT_SECONDS = 5.0


@dataclass
class Run:
    """A snapshot running in this process."""

    shop: Shop
    shop_id: int
    snapshot_id: int
    stop: threading.Event = field(default_factory=threading.Event)
    thread: object = None
    pages: int = 0
    category: str | None = None
    last_touch: float = 0.0


class Snapshotter(DependencyProvider):
    """Owns the bot sessions and the running snapshots of this service process."""

    def setup(self):
        self.settings = ShopSettings.from_config(self.container.config)
        section = config_section(self.container.config, CONFIG_SECTION)
        self.dsn = section.get("dsn")
        self.pool_timeout = float(section.get("pool_timeout", 10))
        if not self.dsn:
            raise ValueError(f"config {CONFIG_SECTION}.dsn is missing: set the PostgreSQL connection URI")
        self.sessions: dict[str, BotSession] = {}
        self.runs: dict[str, Run] = {}
        self.shop_ids: dict[str, int] = {}
        self.pool = None
        self._lock = Semaphore()

    def start(self):
        self.pool = ConnectionPool(self.dsn, min_size=1, max_size=3, timeout=self.pool_timeout, open=False,
                                   name=f"{self.container.service_name}-snapshots",
                                   kwargs={"connect_timeout": 5, "autocommit": True})
        self.pool.open(wait=False)
        enabled = [shop.code for shop in self.settings.shops if shop.enabled]
        _log.info("shop tracker: %d shop(s) configured, read by a bot: %s", len(self.settings.shops),
                  ", ".join(enabled) or "none")

    def stop(self):
        self._shut_down(wait=True)

    def kill(self):
        try:
            self._shut_down(wait=False)
        except Exception:  # kill must not raise; the process is going down
            _log.exception("stopping the shop snapshots failed")

    def get_dependency(self, worker_ctx):
        return self

    def _shut_down(self, wait: bool) -> None:
        runs = list(self.runs.values())
        for run in runs:
            run.stop.set()
        deadline = time.monotonic() + (STOP_WAIT_SECONDS if wait else 0)
        for run in runs:
            while run.thread is not None and not run.thread.dead and time.monotonic() < deadline:
                eventlet.sleep(0.05)
            if run.thread is not None and not run.thread.dead:
                run.thread.kill()
                self._finish(run, "failed", "interrupted: the service stopped")
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        if self.pool is not None:
            self.pool.close(timeout=5)
            self.pool = None

    # -- database helpers

    def connection(self):
        if self.pool is None:
            raise ServiceUnavailable("the shop service is stopping")
        return self.pool.connection()

    def shop_id(self, code: str) -> int:
        """Return the database id of a configured shop, writing the configured shops first if need be."""
        if code not in self.shop_ids:
            with self.connection() as connection:
                self.shop_ids.update(store.sync_shops(connection, self.settings.shops))
        return self.shop_ids[code]

    # -- starting

    def start_snapshot(self, code: str, trigger: str) -> tuple[dict, bool]:
        """Start a snapshot of shop ``code``, or join the running one, and return ``(snapshot, joined)``.

        Raises ShopNotFound for a shop not in the config and ShopDisabled
        for a shop without a bot account.
        """
        shop = self.settings.shop(code)
        if shop is None:
            raise ShopNotFound(f"no shop {code!r} is configured", params={"shop": code})
        if not shop.enabled:
            raise ShopDisabled(f"shop {code!r} has no bot account in the secret {self.settings.bots_secret}",
                               params={"shop": code})
        with self._lock:
            shop_id = self.shop_id(code)
            with self.connection() as connection:
                store.fail_stale(connection, self.settings.stale_after)
                try:
                    snapshot_id = store.create_snapshot(connection, shop_id, trigger, len(CATEGORY_CODES))
                except psycopg.errors.UniqueViolation:
                    running = store.running_snapshot(connection, shop_id)
                    if running is not None:
                        _log.info("shop %s: a snapshot is already running (%d); joining it", code, running["id"])
                        return running, True
                    raise ServiceUnavailable("the running snapshot ended while joining it; try again") from None
                created = store.snapshot(connection, snapshot_id)
            run = Run(shop, shop_id, snapshot_id)
            self.runs[code] = run
            run.thread = eventlet.spawn(self._run, run)
        _log.info("shop %s: snapshot %d started (%s)", code, snapshot_id, trigger)
        return created, False

    def tick(self) -> None:
        """Start a scheduled snapshot of every shop that is due; called by the service's timer."""
        try:
            with self.connection() as connection:
                for snapshot_id in store.fail_stale(connection, self.settings.stale_after):
                    _log.warning("shop snapshot %d was abandoned by a stopped process; marked failed", snapshot_id)
        except DATABASE_ERRORS as error:
            _log.error("shop timer: the database is unavailable: %s", error)
            return
        for shop in self.settings.shops:
            if not shop.enabled or shop.code in self.runs:
                continue
            try:
                if self._due(shop):
                    self.start_snapshot(shop.code, "schedule")
            except DATABASE_ERRORS as error:
                _log.error("shop %s: cannot schedule a snapshot: %s", shop.code, error)

    def _due(self, shop: Shop) -> bool:
        with self.connection() as connection:
            recent = store.last_snapshots(connection, self.shop_id(shop.code), 12)
        if not recent:
            return True
        last = recent[0]
        if last["status"] == "running":
            return False
        now = datetime.now(timezone.utc)
        failures = 0
        for snapshot in recent:
            if snapshot["status"] != "failed":
                break
            failures += 1
        if failures:
            # Back off after failures instead of trying again on every tick.
            wait = min(self.settings.retry_max_delay, self.settings.retry_initial_delay * 2 ** (failures - 1))
            return (now - last["finished_at"]).total_seconds() >= wait
        return (now - last["started_at"]).total_seconds() >= self.settings.interval

    # -- running

    def _session(self, shop: Shop) -> BotSession:
        session = self.sessions.get(shop.code)
        if session is None:
            session = BotSession(self.settings.bot_settings(shop))
            self.sessions[shop.code] = session
        return session

    def _run(self, run: Run) -> None:
        session = self._session(run.shop)
        started = time.monotonic()

        def heartbeat():
            run.pages += 1
            if time.monotonic() - run.last_touch >= HEARTBEAT_SECONDS:
                run.last_touch = time.monotonic()
                with self.connection() as connection:
                    store.touch(connection, run.snapshot_id, run.pages, run.category)

        # NOTE: pages are parsed in this green thread, not in a process pool. A page of 8 items took
        # about 1 ms here, and pause() lets other green threads run every 100 entries of a larger one.
        reader = CategoryReader(lambda category, text, page: session.shop_page(category, text, page).raw,
                                self.settings.scrape_settings(), stopped=run.stop.is_set, on_page=heartbeat,
                                sleep=lambda seconds: run.stop.wait(seconds), pause=lambda: eventlet.sleep(0))
        failed: list[str] = []
        saved: set[int] = set()
        status, error = "failed", None
        try:
            for code in CATEGORY_CODES:
                run.category = code
                result = reader.read(code)
                # A snapshot stores each item once; an id listed in two categories stays in the first.
                repeated = saved.intersection(result.items)
                if repeated:
                    _log.warning("shop %s: snapshot %d: category %s repeats %d item(s) of earlier categories,"
                                 " such as %d; they are kept in the first", run.shop.code, run.snapshot_id, code,
                                 len(repeated), min(repeated))
                    for item_id in repeated:
                        del result.items[item_id]
                saved.update(result.items)
                seen_at = datetime.now(timezone.utc)
                with self.connection() as connection:
                    store.save_category(connection, run.snapshot_id, run.shop_id, result, seen_at, run.pages)
                if not result.complete:
                    failed.append(code)
            if len(failed) == len(CATEGORY_CODES):
                error = "no category could be read: " + ", ".join(failed)
            else:
                status = "partial" if failed else "complete"
                if failed:
                    error = f"{len(failed)} categories failed: {', '.join(failed)}"
        except SessionLost as lost:
            error = f"the bot lost its session: {lost}"
        except Stopped:
            error = "stopped: the service is shutting down"
        except DATABASE_ERRORS as database_error:
            error = f"the database failed: {database_error}"
            _log.error("shop %s: snapshot %d: %s", run.shop.code, run.snapshot_id, error)
        except Exception as unexpected:  # noqa: BLE001 -- recorded on the snapshot, which must not stay running
            _log.exception("shop %s: snapshot %d: unexpected error", run.shop.code, run.snapshot_id)
            error = f"unexpected error: {unexpected!r}"
        self._finish(run, status, error)
        _log.info("shop %s: snapshot %d %s in %.1f s: %d pages%s", run.shop.code, run.snapshot_id, status,
                  time.monotonic() - started, run.pages, f"; {error}" if error else "")

    def _finish(self, run: Run, status: str, error: str | None) -> None:
        if self.runs.get(run.shop.code) is run:
            del self.runs[run.shop.code]
        try:
            with self.connection() as connection:
                counts = store.finish_snapshot(connection, run.snapshot_id, run.shop_id, status, error)
                if status != "failed":
                    _log.info("shop %s: snapshot %d changes: %s", run.shop.code, run.snapshot_id,
                              ", ".join(f"{kind} {count}" for kind, count in counts.items()))
                    store.prune(connection, self.settings.retention_days)
        except (*DATABASE_ERRORS, ServiceUnavailable) as database_error:
            # The row stays running until stale_after, then the timer marks it failed.
            _log.error("shop %s: cannot record the end of snapshot %d: %s", run.shop.code, run.snapshot_id,
                       database_error)
