"""Calls from the agent to the services over Nameko RPC.

nameko's standalone RPC proxy is blocking and not thread-safe, so each
worker thread of a bounded pool keeps its own proxy (one per timeout), and
the event loop waits for the thread with ``run_in_executor``. No service
module is imported: eventlet's monkey patch must stay out of this asyncio
process. Loading :mod:`services.common.errors` (see :mod:`site_agent.shared`)
registers the services' error classes, so a remote error arrives as itself with its code.

Each call carries the job id as the request id (it appears in the services'
log lines) and ``now + timeout`` as its deadline, so a service refuses a
call that waited in the queue after the agent stopped waiting.
"""

import asyncio
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from logging import getLogger

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

# nameko imports eventlet, which warns that it is deprecated. The agent
# never runs eventlet's hub, so the warning would only open every log.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
    from nameko.standalone.rpc import ClusterRpcProxy

from site_agent.shared import errors


# The context data keys of services.common.request_context: the request id
# in every log line, and the Unix time after which the caller stops waiting.
CONTEXT_KEY = "request_id"
DEADLINE_KEY = "deadline"


_log = getLogger(__name__)

# Seconds the event loop waits past a call's own timeout before giving up on its thread.
# NOTE: a thread given up on stays busy until nameko's proxy times out, which
# measures silence on the reply socket rather than the call's whole duration.
_GRACE = 2.0


class RpcBackend:
    """Runs ``service.method(*args)`` in a pool of ``workers`` threads, each call bounded by its timeout."""

    def __init__(self, amqp_uri: str, workers: int):
        self.config = {"AMQP_URI": amqp_uri, "serializer": "json"}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent-rpc")
        self._local = threading.local()
        self._proxies = []
        self._lock = threading.Lock()

    async def call(self, service: str, method: str, *args, timeout: float, request_id: str):
        """Return the method's result; raise a :class:`ServiceError` for every failure."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._call, service, method, args, timeout, request_id)
        try:
            return await asyncio.wait_for(future, timeout + _GRACE)
        except asyncio.TimeoutError:
            raise errors.ServiceUnavailable(f"{service}.{method} did not respond within {timeout:g} s") from None

    def _proxy(self, timeout: float):
        proxies = getattr(self._local, "proxies", None)
        if proxies is None:
            proxies = self._local.proxies = {}
        entry = proxies.get(timeout)
        if entry is None:
            standalone = ClusterRpcProxy(self.config, timeout=timeout)
            entry = proxies[timeout] = (standalone, standalone.start())
            with self._lock:
                self._proxies.append(standalone)
        return entry

    def _discard(self, timeout: float) -> None:
        standalone, _ = self._local.proxies.pop(timeout)
        with self._lock:
            if standalone in self._proxies:
                self._proxies.remove(standalone)
        try:
            standalone.stop()
        except (AMQPError, OperationalError, OSError):
            pass

    def _call(self, service: str, method: str, args: tuple, timeout: float, request_id: str):
        try:
            standalone, cluster = self._proxy(timeout)
        except (AMQPError, OperationalError, OSError) as error:
            _log.error("job %s: cannot reach RabbitMQ: %s", request_id, error)
            raise errors.ServiceUnavailable(f"RabbitMQ is unavailable: {error}") from None
        # The proxy belongs to this thread, so its context data is ours to set.
        standalone._worker_ctx.data[CONTEXT_KEY] = request_id
        standalone._worker_ctx.data[DEADLINE_KEY] = round(time.time() + timeout, 3)
        try:
            return getattr(getattr(cluster, service), method)(*args)
        except errors.ServiceError:
            raise
        except RpcTimeout:
            _log.error("job %s: %s.%s timed out after %g s", request_id, service, method, timeout)
            raise errors.ServiceUnavailable(f"{service}.{method} did not respond within {timeout:g} s") from None
        except UnknownService:
            _log.error("job %s: no instance of %s is running", request_id, service)
            raise errors.ServiceUnavailable(f"the {service} service is not running") from None
        except RemoteError as error:
            _log.error("job %s: %s.%s failed: %s", request_id, service, method, error.exc_type)
            raise errors.InternalError(f"{service}.{method} failed with {error.exc_type}") from None
        except (AMQPError, OperationalError, OSError, RuntimeError) as error:
            _log.error("job %s: RabbitMQ failed during %s.%s: %r", request_id, service, method, error)
            self._discard(timeout)
            raise errors.ServiceUnavailable(f"RabbitMQ failed: {error}") from None

    def close(self) -> None:
        """Wait for running calls, then close every proxy's connection."""
        self._executor.shutdown(wait=True)
        with self._lock:
            proxies, self._proxies = self._proxies, []
        for standalone in proxies:
            try:
                standalone.stop()
            except (AMQPError, OperationalError, OSError):
                pass
