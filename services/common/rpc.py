"""RPC calls with a deadline.

nameko 2.14's RPC proxies wait for a reply without limit; these helpers wait
at most ``timeout`` seconds and turn a missing or absent service into
:class:`~services.common.errors.ServiceUnavailable`, so a caller answers in
bounded time when a service is down. Each call also carries its deadline
in the context data (see :mod:`services.common.request_context`), so the
called service can refuse a request whose caller has stopped waiting.
"""

import time
from logging import getLogger

import eventlet
from eventlet.semaphore import Semaphore
from kombu import Connection
from kombu.exceptions import OperationalError
from amqp.exceptions import AMQPError, NotFound
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RPC_QUEUE_TEMPLATE

from services.common.errors import ServiceError, ServiceUnavailable
from services.common.request_context import DEADLINE_KEY


_log = getLogger(__name__)

#: Seconds that RpcConsumers keeps a service's consumer count.
CONSUMERS_CACHE_SECONDS = 1.5
_BROKER_TIMEOUT = 2.0


def call(service_proxy, method: str, *args, timeout: float, **kwargs):
    """Call ``service_proxy.<method>(*args, **kwargs)`` and wait at most ``timeout`` seconds.

    The call carries ``now + timeout`` as its deadline. Errors the remote
    method raises come back as themselves (see :mod:`services.common.errors`),
    marked ``relayed``. Raises :class:`ServiceUnavailable` when the service
    has no running instance or does not respond in time.
    """
    service = getattr(service_proxy, "service_name", "?")
    worker_ctx = getattr(service_proxy, "worker_ctx", None)
    if worker_ctx is not None:
        # worker_ctx.context_data returns a copy, and nameko sends worker_ctx.data with each call.
        worker_ctx.data[DEADLINE_KEY] = round(time.time() + timeout, 3)
    try:
        reply = getattr(service_proxy, method).call_async(*args, **kwargs)
        with eventlet.Timeout(timeout):
            return reply.result()
    except eventlet.Timeout:
        _log.error("rpc %s.%s timed out after %.1f s", service, method, timeout)
        raise ServiceUnavailable(f"{service}.{method} did not respond within {timeout:g} s") from None
    except UnknownService:
        _log.error("rpc %s.%s: no instance of %s is running", service, method, service)
        raise ServiceUnavailable(f"the {service} service is not running") from None
    except ServiceError as error:
        # The service that raised it logged it; QuietClientErrors uses this
        # mark to log a client error once.
        error.relayed = True
        raise


class RpcConsumers(DependencyProvider):
    """Tells whether any instance of a service is consuming its RPC queue.

    nameko keeps a service's queue (``rpc-<service>``) after every instance
    has stopped, so a call waits there until its timeout, and runs when an
    instance starts again. A passive queue declare returns the queue's
    consumer count without changing anything. The result is cached for
    ``cache_seconds`` per service, and one AMQP connection is reused.
    """

    def __init__(self, cache_seconds: float = CONSUMERS_CACHE_SECONDS):
        self.cache_seconds = cache_seconds

    def setup(self):
        self.amqp_uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self._answers: dict[str, tuple[float, bool]] = {}
        self._lock = Semaphore()
        self._connection: Connection | None = None

    def stop(self):
        self._close()

    def kill(self):
        self._close()

    def get_dependency(self, worker_ctx):
        return self

    def running(self, service: str) -> bool:
        """Return False when the service's queue has no consumer, and True when it has one or the count is unknown."""
        answer = self._answers.get(service)
        if answer is not None and time.monotonic() - answer[0] < self.cache_seconds:
            return answer[1]
        with self._lock:
            answer = self._answers.get(service)
            if answer is not None and time.monotonic() - answer[0] < self.cache_seconds:
                return answer[1]
            consumers = self._consumer_count(service)
            running = consumers is None or consumers > 0
            self._answers[service] = (time.monotonic(), running)
        if not running:
            _log.warning("no instance of the %s service is consuming its queue", service)
        return running

    def _consumer_count(self, service: str) -> int | None:
        queue = RPC_QUEUE_TEMPLATE.format(service)
        try:
            with eventlet.Timeout(2 * _BROKER_TIMEOUT):
                if self._connection is None:
                    self._connection = Connection(self.amqp_uri, connect_timeout=_BROKER_TIMEOUT,
                                                  transport_options={"max_retries": 1})
                channel = self._connection.default_channel
                _, _, consumers = channel.queue_declare(queue=queue, passive=True)
            return consumers
        except NotFound:
            # The broker closed the channel; a new connection is made next time.
            self._close()
            return 0
        except (AMQPError, OperationalError, OSError, eventlet.Timeout) as error:
            _log.warning("cannot count the consumers of %s, calling it anyway: %r", queue, error)
            self._close()
            return None

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except (AMQPError, OperationalError, OSError):
                pass
