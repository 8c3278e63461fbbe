"""Fetching one battle log with a bot account: retries, outcome, and the file in the drop folder."""

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import tenacity
from eventlet import tpool
from eventlet.queue import Empty, LightQueue

from services.game.bots import BotAccount
from services.game.client import (
    BattleIdMismatch,
    BotSession,
    GameConnectFailed,
    GameLoginFailed,
    GameNoReply,
    GameRefused,
)
from services.game.framing import GameError, GameProtocolError
from services.ingest.collection.settings import CollectSettings
from services.ingest.collection.store import BattleOutcome


_log = getLogger(__name__)

#: Name pattern of the collector's temporary files in the drop folder; the
#: ingest pipeline skips hidden files, so a half-written log is never read.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".collect.tmp"


class Interrupted(Exception):
    """The job was aborted or stopped while waiting to retry; the id stays without an outcome."""


class BotRejected(Exception):
    """The game server rejected the bot's LOGIN; the id goes to another bot."""

    def __init__(self, login: str, error: GameLoginFailed):
        super().__init__(f"bot {login}: {error}")
        self.login = login


@dataclass
class Bot:
    """One bot account with its own session; only one request uses it at a time."""

    account: BotAccount
    session: BotSession
    usable: bool = True


class BotPool:
    """The bot sessions of a service process, handed out one request at a time.

    Each account has exactly one :class:`BotSession`, and a bot is out of the
    pool while a request uses it, so every account has at most one request in
    flight. A bot whose LOGIN is rejected is set aside for good.
    """

    def __init__(self, settings: CollectSettings):
        self._queue: LightQueue = LightQueue()
        self.bots = [Bot(account, BotSession(settings.bot_settings(account))) for account in settings.bots]
        for bot in self.bots:
            self._queue.put(bot)

    @property
    def usable(self) -> int:
        return sum(1 for bot in self.bots if bot.usable)

    def take(self, interrupted: Callable[[], bool]) -> Bot:
        """Wait for a free bot; raise Interrupted when ``interrupted()`` turns true or no bot is usable."""
        while True:
            if interrupted():
                raise Interrupted("the job stopped while waiting for a free bot")
            if not self.usable:
                raise Interrupted("every bot account was rejected at LOGIN")
            try:
                return self._queue.get(timeout=0.5)
            except Empty:
                continue

    def release(self, bot: Bot) -> None:
        if bot.usable:
            self._queue.put(bot)

    def close(self) -> None:
        for bot in self.bots:
            bot.session.close()


def is_transient(error: BaseException) -> bool:
    """Return whether a failed request may succeed when sent again.

    A connection that was never made, a dropped or timed-out reply and a
    garbled reply are transient. Any whole reply, even an error or another
    battle's log, is final and is not retried.
    """
    if isinstance(error, (GameRefused, BattleIdMismatch)):
        return False
    return isinstance(error, (GameConnectFailed, GameNoReply, GameProtocolError))


class Fetcher:
    """Requests battle logs and writes them into the drop folder."""

    def __init__(self, settings: CollectSettings, drop_dir: Path):
        self.settings = settings
        self.drop_dir = drop_dir

    def fetch(self, bot: Bot, battle_id: int, stop: threading.Event) -> BattleOutcome:
        """Request one battle, retrying transient failures with backoff, and return its outcome.

        A fetched log is written to the drop folder before the outcome is
        returned. Raises :class:`Interrupted` when ``stop`` is set during a
        backoff, and :class:`BotRejected` when the bot cannot log in.
        """
        settings = self.settings
        login = bot.account.login
        attempts = 0

        def request() -> bytes:
            nonlocal attempts
            attempts += 1
            return bot.session.fetch_battle(battle_id)

        def wait(seconds: float) -> None:
            if stop.wait(seconds):
                raise Interrupted(f"battle {battle_id}: the job stopped while waiting to retry")

        def log_retry(state: tenacity.RetryCallState) -> None:
            _log.warning(
                "battle %d: bot %s: %s; retrying in %.1f s (attempt %d of %d)",
                battle_id, login, state.outcome.exception(), state.next_action.sleep,
                state.attempt_number, settings.attempts,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(settings.attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=settings.retry_initial_delay,
                max=settings.retry_max_delay,
                jitter=settings.retry_initial_delay,
            ),
            sleep=wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            data = retrying(request)
        except GameLoginFailed as error:
            raise BotRejected(login, error) from error
        except BattleIdMismatch as error:
            _log.warning("battle %d: bot %s: %s; the log was not saved", battle_id, login, error)
            return BattleOutcome("mismatch", attempts, found_id=error.found, detail=str(error), bot=login)
        except GameRefused as error:
            if error.code in settings.not_found_codes:
                return BattleOutcome("not_found", attempts, code=error.code, bot=login)
            _log.warning("battle %d: bot %s: %s", battle_id, login, error)
            return BattleOutcome("failed", attempts, reason="refused", code=error.code, detail=str(error), bot=login)
        except GameError as error:
            reason = _failure_reason(error)
            _log.warning("battle %d: bot %s: failed after %d attempt(s): %s", battle_id, login, attempts, error)
            return BattleOutcome("failed", attempts, reason=reason, detail=str(error), bot=login)

        try:
            size, digest = tpool.execute(write_log, self.drop_dir, battle_id, data)
        except OSError as error:
            _log.error("battle %d: cannot write the log into %s: %s", battle_id, self.drop_dir, error)
            return BattleOutcome("failed", attempts, reason="write_failed", detail=str(error), bot=login)
        return BattleOutcome("fetched", attempts, size=size, sha256=digest, bot=login)


def _failure_reason(error: GameError) -> str:
    if isinstance(error, GameConnectFailed):
        return "connect_failed"
    if isinstance(error, GameNoReply):
        return error.reason
    if isinstance(error, GameProtocolError):
        return "protocol_error"
    return "error"


def write_log(drop_dir: Path, battle_id: int, data: bytes) -> tuple[int, str]:
    """Write ``<battle_id>.tzb`` atomically: a hidden temporary file, fsync, then rename.

    Returns the size and the SHA-256 (hex) of the bytes. It does blocking
    file I/O, so the collector runs it in eventlet's thread pool.
    """
    digest = hashlib.sha256(data).hexdigest()
    descriptor, temporary = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{battle_id}.tzb.", suffix=TEMP_SUFFIX,
                                             dir=drop_dir)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, drop_dir / f"{battle_id}.tzb")
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return len(data), digest


def remove_stale_temporary_files(drop_dir: Path, older_than: float) -> int:
    """Delete the collector's temporary files older than ``older_than`` seconds; return how many."""
    removed = 0
    limit = time.time() - older_than
    for path in drop_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
