"""The request id of the current call, carried across RPC and into every log line.

The gateway takes the id from ``X-Request-Id`` (or makes one) and stores it
in the worker's context data, which nameko passes along with every RPC
call it makes. :class:`RequestContext` puts it in a context variable for
the worker's green thread, and :class:`RequestIdFilter` writes it into log
records as ``request_id``.
"""

import contextvars
import logging

from nameko.extensions import DependencyProvider


CONTEXT_KEY = "request_id"
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
        self.worker_ctx.context_data[CONTEXT_KEY] = request_id
        request_id_var.set(request_id)


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
    """Drops the traceback from log records of errors that the caller caused.

    nameko logs every exception a worker raises with its traceback. For a
    :class:`~services.common.errors.ServiceError` with a 4xx status (an
    invalid field, a taken login) the one-line message is enough;
    server-side errors keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from services.common.errors import ServiceError

        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if isinstance(error, ServiceError) and error.status < 500:
                record.exc_info = None
                record.exc_text = None
        return True
