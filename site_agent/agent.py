"""The agent: one outbound WebSocket to the website, jobs in, signed results out.

Per frame: a frame that is not a JSON job with an id is logged and dropped;
every other frame gets a signed result. A job's shape, signature and age are
checked (:func:`site_agent.protocol.check_job`), then its id and nonce are
claimed in Redis (:mod:`site_agent.store`): a new job runs, a repeated id
gets the stored outcome (after waiting for it when the job is still
running), a reused nonce is refused. At most ``concurrency`` jobs run at
once and at most ``max_pending`` wait; more get ``agent_busy``.

The connection is kept alive by WebSocket pings: a peer that stops
answering them within ``ping_timeout`` is taken for a half-open connection
and dropped. Any close or error on the socket means reconnecting, after an
exponential backoff with jitter. A handshake refused with 401 or 403, or a
close with code 1008 or 4001 to 4003, means the site rejected the token:
the agent then waits for the token file to change (or for SIGHUP) instead
of knocking again with the same token. On SIGTERM or SIGINT the agent
stops reading, finishes the jobs in flight (up to ``shutdown_timeout``),
sends their results and closes the connection.
"""

import asyncio
import json
import random
import time
from logging import getLogger

import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from site_agent import protocol
from site_agent.auth import TokenError
from site_agent.protocol import FrameDropped, JobRejected, error_text
from site_agent.shared import errors


_log = getLogger(__name__)

#: Close codes that a site sends when it rejects the token.
AUTH_CLOSE_CODES = frozenset({1008, 4001, 4002, 4003})
AUTH_HTTP_STATUSES = frozenset({401, 403})
#: A connection that lasted this long resets the backoff.
STABLE_SECONDS = 10.0
_POLL_STORED = 0.1


class Backoff:
    """Exponential delays from ``low`` to ``high``, each drawn between half and all of the step."""

    def __init__(self, low: float, high: float, rng=random.random):
        self.low, self.high, self.rng = low, high, rng
        self.step = low

    def next(self) -> float:
        step = min(self.step, self.high)
        self.step = min(self.step * 2, self.high)
        return step / 2 + self.rng() * step / 2

    def reset(self) -> None:
        self.step = self.low


class Agent:
    """Connects to the site and serves its jobs until :meth:`stop`."""

    def __init__(self, settings, runner, store, tokens):
        self.settings = settings
        self.runner = runner
        self.store = store
        self.tokens = tokens
        self.backoff = Backoff(settings.backoff_min, settings.backoff_max)
        self._stopping = asyncio.Event()
        self._token_hint = asyncio.Event()
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._running: dict[str, asyncio.Future] = {}
        self._connection = None
        self.connections = 0

    # -- control

    def stop(self) -> None:
        """Begin a graceful shutdown: no new frames are read, running jobs finish."""
        if not self._stopping.is_set():
            _log.info("stopping: finishing %d job(s) in flight", len(self._tasks))
        self._stopping.set()

    def token_hint(self) -> None:
        """Read the token file again before the next connection (SIGHUP)."""
        _log.info("SIGHUP received: the token file is read again before the next connection")
        self._token_hint.set()

    # -- connection loop

    async def run(self) -> None:
        """Connect, serve and reconnect until stopped, then wait for the jobs in flight."""
        settings = self.settings
        while not self._stopping.is_set():
            try:
                if self._token_hint.is_set():
                    self._token_hint.clear()
                    self.tokens.reload()
                token = self.tokens.check_usable()
            except TokenError as error:
                _log.error("%s; waiting for a new token", error)
                await self._wait_for_token()
                continue

            started = None
            auth_refused = False
            try:
                async with connect(
                    settings.site_url,
                    additional_headers={"Authorization": f"Bearer {token.value}"},
                    max_size=settings.max_frame_bytes,
                    ping_interval=settings.ping_interval,
                    ping_timeout=settings.ping_timeout,
                    open_timeout=settings.open_timeout,
                    close_timeout=5,
                    user_agent_header="tzr-site-agent",
                ) as connection:
                    started = time.monotonic()
                    self.connections += 1
                    self._connection = connection
                    _log.info("connected to %s", settings.site_url)
                    await self._serve(connection)
            except InvalidStatus as error:
                status = error.response.status_code
                auth_refused = status in AUTH_HTTP_STATUSES
                _log.error("the site refused the connection with HTTP %s", status)
            except ConnectionClosed as error:
                code = error.rcvd.code if error.rcvd is not None else None
                auth_refused = code in AUTH_CLOSE_CODES
                _log.warning("connection closed: %s", error)
            except (OSError, InvalidHandshake, asyncio.TimeoutError) as error:
                _log.warning("cannot connect to %s: %s", settings.site_url, error or type(error).__name__)
            finally:
                self._connection = None
            if started is not None and time.monotonic() - started >= STABLE_SECONDS:
                self.backoff.reset()
            if self._stopping.is_set():
                break
            if auth_refused:
                _log.error("the site rejected the token in %s; waiting for a new one (or SIGHUP)",
                           self.tokens.path)
                await self._wait_for_token(require_change=True)
                self.backoff.reset()
                continue
            delay = self.backoff.next()
            _log.info("reconnecting in %.1f s", delay)
            await self._sleep(delay)
        await self._finish_jobs()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _wait_for_token(self, require_change: bool = False) -> None:
        """Wait until the token file changes, SIGHUP arrives, or the agent stops."""
        while not self._stopping.is_set():
            if self._token_hint.is_set() or self.tokens.changed():
                return
            if not require_change:
                try:
                    self.tokens.check_usable()
                    return
                except TokenError:
                    pass
            try:
                await asyncio.wait_for(self._token_hint.wait(), self.settings.token_poll)
            except asyncio.TimeoutError:
                pass

    async def _serve(self, connection) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(connection.recv())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    receiving.cancel()
                    await self._finish_jobs()
                    await connection.close(1001, "agent stopping")
                    return
                self._accept(receiving.result())
        finally:
            stopping.cancel()

    async def _finish_jobs(self) -> None:
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_timeout)
        for task in late:
            _log.error("a job did not finish within %.0f s of the shutdown; abandoning it",
                       self.settings.shutdown_timeout)
            task.cancel()

    # -- jobs

    def _accept(self, frame) -> None:
        try:
            message = protocol.parse_frame(frame)
        except FrameDropped as error:
            _log.warning("dropped a frame: %s", error)
            return
        if len(self._tasks) >= self.settings.max_pending:
            _log.warning("job %s: rejected as agent_busy, %d jobs already pending", message["id"], len(self._tasks))
            task = asyncio.ensure_future(self._send(message["id"], False, None, error_text("agent_busy")))
        else:
            task = asyncio.ensure_future(self._process(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, message: dict) -> None:
        job_id = message["id"]
        started = time.monotonic()
        try:
            job = protocol.check_job(message, self.settings.hmac_key, self.settings.job_ttl)
            _log.info("job %s: %s received", job_id, job.job_type)
            ok, result, error = await self._execute(job)
        except JobRejected as rejection:
            _log.warning("job %s: rejected, %s: %s", job_id, rejection.code, rejection.detail)
            ok, result, error = False, None, error_text(rejection.code, rejection.params, rejection.fields)
        except Exception:
            # Every job with an id gets a result, even when the agent itself fails.
            _log.exception("job %s: failed unexpectedly", job_id)
            ok, result, error = False, None, error_text("internal_error")
        _log.info("job %s: done in %.3f s, ok=%s", job_id, time.monotonic() - started, ok)
        await self._send(job_id, ok, result, error)

    async def _execute(self, job) -> tuple:
        fingerprint = job.fingerprint()
        try:
            claim = await self.store.claim(job.id, job.nonce, fingerprint)
        except (redis.RedisError, OSError) as error:
            # Without the replay cache a job could run twice, so it is rejected with a retryable error.
            _log.error("job %s: rejected because Redis is unavailable: %s", job.id, error)
            return False, None, error_text("service_unavailable")
        if claim.kind == "nonce_reused":
            raise JobRejected("nonce_reused", f"nonce {job.nonce} seen before", store=False)
        if claim.kind == "repeat":
            return await self._repeat(job, claim.record, fingerprint)

        future = asyncio.get_running_loop().create_future()
        self._running[job.id] = future
        try:
            outcome, keep = await self._run(job)
            try:
                if keep:
                    await self.store.finish(job.id, fingerprint, *outcome)
                else:
                    await self.store.forget(job.id)
            except (redis.RedisError, OSError) as error:
                _log.error("job %s: outcome not stored in Redis: %s", job.id, error)
            future.set_result(outcome)
            return outcome
        finally:
            if not future.done():
                future.cancel()
            self._running.pop(job.id, None)

    async def _run(self, job) -> tuple[tuple, bool]:
        """Run a claimed job and return its outcome and whether to keep it for repeats.

        A retryable failure (a service was down) is not kept, so the site's
        retry under the same id runs the job again. The services are
        idempotent by request id, so the retry does nothing twice.
        """
        try:
            async with self._semaphore:
                if not self.runner.knows(job.job_type):
                    raise JobRejected("unknown_job_type", f"unknown job type {job.job_type[:64]!r}",
                                      params={"job_type": job.job_type[:64]})
                return (True, await self.runner.run(job), None), True
        except JobRejected as rejection:
            _log.warning("job %s: rejected, %s: %s", job.id, rejection.code, rejection.detail)
            return (False, None, error_text(rejection.code, rejection.params, rejection.fields)), True
        except errors.ServiceError as error:
            _log.warning("job %s: failed, %s: %s", job.id, error.code, error.detail)
            return (False, None, error_text(error.code, error.params, error.fields)), not error.retryable
        except Exception:
            _log.exception("job %s: failed unexpectedly", job.id)
            return (False, None, error_text("internal_error")), False

    async def _repeat(self, job, record: dict, fingerprint: str) -> tuple:
        if record.get("fp") != fingerprint:
            raise JobRejected("job_id_reused", "the id was used for another job", store=False)
        if record.get("state") == "done":
            _log.info("job %s: repeated, sending the stored outcome", job.id)
            return record["ok"], record["result"], record["error"]
        _log.info("job %s: repeated while it runs, waiting for its outcome", job.id)
        running = self._running.get(job.id)
        deadline = time.monotonic() + self.settings.running_keep
        if running is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(running), self.settings.running_keep)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        # Another agent runs it, or this one was restarted: wait for the stored outcome.
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                stored = await self.store.get(job.id)
            except (redis.RedisError, OSError):
                break
            if stored is None:
                break
            if stored.get("state") == "done":
                return stored["ok"], stored["result"], stored["error"]
            await asyncio.sleep(_POLL_STORED)
        raise JobRejected("job_in_progress", store=False)

    async def _send(self, job_id: str, ok: bool, result, error) -> None:
        message = protocol.result_message(job_id, ok, result, error, self.settings.hmac_key)
        # The connection the job came on may have gone; a newer one carries the result.
        connection = self._connection
        if connection is None:
            _log.warning("job %s: no connection, result not sent (a repeat of the job gets it)", job_id)
            return
        try:
            await connection.send(json.dumps(message, ensure_ascii=False))
        except ConnectionClosed:
            _log.warning("job %s: connection closed, result not sent (a repeat of the job gets it)", job_id)
