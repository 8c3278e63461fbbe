"""The request id and deadline of the current call, carried across RPC and into every log line.

The gateway takes the id from ``X-Request-Id`` (or makes one) and stores it
in the worker's context data, which nameko passes along with every RPC
call it makes. :class:`RequestContext` puts it in a context variable for
the worker's green thread, and :class:`RequestIdFilter` writes it into log
records as ``request_id``.

:func:`services.common.rpc.call` also stores the caller's deadline there,
as Unix time in seconds, so that a service can tell that the caller has
stopped waiting. Comparing it with the callee's clock assumes that both
run on one host or have synchronised clocks.
"""

import contextvars
import logging
import time

from nameko.extensions import DependencyProvider


CONTEXT_KEY = "request_id"
DEADLINE_KEY = "deadline"
_NO_REQUEST = "-"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=_NO_REQUEST)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class _Context:
    def __init__(self, worker_ctx):
        self.worker_ctx = worker_ctx

    @property
    def request_id(self) -> str | None:
        return self.worker_ctx.context_data.get(CONTEXT_KEY)

    def set_request_id(self, request_id: str) -> None:
        """Use ``request_id`` for this worker's logs and for the RPC calls it makes."""
        # worker_ctx.context_data returns a copy, and nameko sends worker_ctx.data with each call.
        self.worker_ctx.data[CONTEXT_KEY] = request_id
        request_id_var.set(request_id)

    @property
    def deadline(self) -> float | None:
        """The caller's deadline as Unix time, or None when the call carries none."""
        value = self.worker_ctx.context_data.get(DEADLINE_KEY)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            return float(value)
        except ValueError:
            return None

    def seconds_past_deadline(self) -> float | None:
        """Return how many seconds ago the caller's deadline passed, or None when it has not."""
        deadline = self.deadline
        if deadline is None:
            return None
        overdue = time.time() - deadline
        return overdue if overdue > 0 else None


class RequestContext(DependencyProvider):
    """Gives each worker its request id and sets it for logging while it runs."""

    def worker_setup(self, worker_ctx):
        request_id = worker_ctx.context_data.get(CONTEXT_KEY)
        if request_id:
            request_id_var.set(str(request_id))

    def worker_teardown(self, worker_ctx):
        request_id_var.set(_NO_REQUEST)

    def get_dependency(self, worker_ctx):
        return _Context(worker_ctx)


class QuietClientErrors(logging.Filter):
    """Logs each error that the caller caused once, at INFO and without a traceback.

    nameko logs every exception a worker raises at ERROR, with its
    traceback. For a :class:`~services.common.errors.ServiceError` with a
    4xx status (an invalid field, a taken login) one INFO line is enough.
    The gateway raises again the errors that come back from another
    service, which logged them already: :func:`services.common.rpc.call`
    marks those as ``relayed``, and their second record is dropped.
    Server-side errors keep their level and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from services.common.errors import ServiceError

        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if isinstance(error, ServiceError) and error.status < 500:
                if getattr(error, "relayed", False):
                    return False
                record.exc_info = None
                record.exc_text = None
                if record.levelno > logging.INFO:
                    record.levelno = logging.INFO
                    record.levelname = logging.getLevelName(logging.INFO)
        return True
