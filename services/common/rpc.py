"""RPC calls with a deadline.

nameko 2.14's RPC proxies wait for a reply without limit; these helpers wait
at most ``timeout`` seconds and turn a missing or absent service into
:class:`~services.common.errors.ServiceUnavailable`, so a caller answers in
bounded time when a service is down.
"""

from logging import getLogger

import eventlet
from nameko.exceptions import UnknownService

from services.common.errors import ServiceUnavailable


_log = getLogger(__name__)


def call(service_proxy, method: str, *args, timeout: float, **kwargs):
    """Call ``service_proxy.<method>(*args, **kwargs)`` and wait at most ``timeout`` seconds.

    Errors the remote method raises come back as themselves (see
    :mod:`services.common.errors`). Raises :class:`ServiceUnavailable`
    when the service has no running instance or does not respond in time.
    """
    service = getattr(service_proxy, "service_name", "?")
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
