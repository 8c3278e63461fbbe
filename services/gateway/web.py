"""HTTP plumbing of the gateway: request ids, CORS, body limits, envelopes, metrics.

Every response of the gateway, errors included, carries ``X-Request-Id``
and, for an allowed ``Origin``, the CORS headers. Errors are the envelope
``{"ok": false, "error", "message", "fields", "request_id"}``, with the
message in Russian or, on ``Accept-Language: en``, in English. Preflight
``OPTIONS`` requests get their response here, before any worker runs, so they
never need an API key.
"""

import io
import json
import re
import socket
import time
import uuid
from functools import partial
from logging import getLogger

from eventlet.event import Event

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from prometheus_client import CollectorRegistry, Counter, Histogram
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from services.common.config import read_number
from services.common.config import section as config_section
from services.common.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
)
from services.common.messages import pick_language, render
from services.common.request_context import CONTEXT_KEY, request_id_var


_log = getLogger(__name__)

CONFIG_SECTION = "GATEWAY"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_ENVIRON = "tzr.request_id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
DEFAULT_MAX_BODY = 16 * 1024
ALLOWED_HEADERS = "Content-Type, X-API-Key, X-Request-Id, Accept-Language"
# Response headers that a browser script may read.
EXPOSED_HEADERS = "X-Request-Id, Retry-After"
PREFLIGHT_MAX_AGE = 600
_READ_BYTES = 64 * 1024
# Deeper JSON is rejected before parsing: the account bodies nest two levels,
# and json.loads raises RecursionError near a thousand.
MAX_JSON_DEPTH = 32
# Methods counted in metrics under their own name; any other counts as "other",
# so clients cannot create a series per made-up method.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Metrics of this process. A registry of its own keeps tests that start
# several gateways from colliding in the global one.
REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "tzr_http_requests", "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"], registry=REGISTRY,
)
LATENCY = Histogram(
    "tzr_http_request_seconds", "Time to answer an HTTP request, in seconds.",
    ["route"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def request_id_of(request: Request) -> str:
    """Return the request's id: the client's ``X-Request-Id`` when valid, else a new one."""
    existing = request.environ.get(REQUEST_ID_ENVIRON)
    if existing:
        return existing
    presented = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = presented if _REQUEST_ID_RE.fullmatch(presented) else uuid.uuid4().hex
    request.environ[REQUEST_ID_ENVIRON] = request_id
    return request_id


def read_json(request: Request) -> object:
    """Return the parsed JSON body; raise BadRequest for another content type, bad JSON or deep nesting."""
    content_type = request.mimetype or ""
    if content_type != "application/json":
        raise BadRequest(f"content type {content_type!r}", params={"reason": "reason.content_type"})
    data = request.get_data(cache=False) or b"null"
    if json_depth_exceeds(data, MAX_JSON_DEPTH):
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                         params={"reason": "reason.json_depth", "depth": MAX_JSON_DEPTH})
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON: {error}", params={"reason": "reason.json_invalid"}) from None


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Tell whether arrays and objects in ``data`` nest deeper than ``limit``, brackets in strings aside."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quotation mark
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _read_bounded(stream, limit: int) -> bytes | None:
    """Read a whole body of unknown length; return None as soon as it exceeds ``limit`` bytes."""
    parts, size = [], 0
    while True:
        chunk = stream.read(min(_READ_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False),
        status=status,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def envelope(error: ServiceError, request: Request, extra: dict | None = None) -> Response:
    """Build the error envelope for ``error``, in the request's language; ``extra`` adds keys to it."""
    language = pick_language(request.headers.get("Accept-Language"))
    body = {
        "ok": False,
        "error": error.code,
        "message": render(error.code, language, error.params),
        "fields": {name: _render_field(value, language, error.params) for name, value in error.fields.items()},
        **(extra or {}),
        "request_id": request_id_of(request),
    }
    headers = {}
    if "retry_after" in error.params:
        headers["Retry-After"] = str(error.params["retry_after"])
    return json_response(body, status=error.status, headers=headers)


def _render_field(value, language: str, params: dict) -> str:
    # A field maps to a message key, or to [key, params] when the message
    # has placeholders of its own (such as the bounds of one parameter).
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], dict):
        return render(value[0], language, {**params, **value[1]})
    return render(value, language, params)


class CorsPolicy:
    """The origins allowed to call the API from a browser."""

    def __init__(self, origins):
        self.origins = frozenset(origins or ())

    def headers_for(self, request: Request) -> dict:
        origin = request.headers.get("Origin")
        if not origin or origin not in self.origins:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS,
                "Vary": "Origin"}


def _parse_origins(value) -> list[str]:
    if isinstance(value, str):
        return [origin.strip() for origin in value.split(",") if origin.strip()]
    return list(value or [])


class ApiWsgiApp(WsgiApp):
    """Routes requests; an unknown URL or method gets the envelope, not HTML."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            response = provider.handle_request(request)
        except HTTPException as exc:
            error = MethodNotAllowed() if exc.code == 405 else NotFound()
            response = envelope(error, request)
            if exc.code == 405 and getattr(exc, "valid_methods", None):
                response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
            response = self.server.finish(request, response, "unmatched", time.monotonic())
        # The server's access log line comes from this green thread after the
        # response is written, so it carries the request id too.
        request_id_var.set(request_id_of(request))
        return response(environ, start_response)


class ApiWebServer(WebServer):
    """nameko's web server with envelope errors and a loopback default address."""

    def bind_addr_default(self) -> str:
        return "127.0.0.1:8000"

    @property
    def bind_addr(self):
        from nameko.web.server import parse_address

        address = self.container.config.get("WEB_SERVER_ADDRESS", self.bind_addr_default())
        return parse_address(address)

    def setup(self):
        settings = config_section(self.container.config, CONFIG_SECTION)
        self.cors = CorsPolicy(_parse_origins(settings.get("cors_origins")))
        self.max_body = read_number(settings, CONFIG_SECTION, "max_body_bytes", DEFAULT_MAX_BODY, int, minimum=1)
        super().setup()

    def get_wsgi_app(self):
        return ApiWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, *args, **kwargs):
        # The WSGI server writes the headers and the body separately. With
        # Nagle's algorithm the body then waits for the client's delayed ACK
        # of the headers (40 ms on Linux); accepted sockets inherit this option.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().get_wsgi_server(sock, wsgi_app, *args, **kwargs)

    def finish(self, request: Request, response: Response, route: str, started: float) -> Response:
        """Add the headers every response carries and count it."""
        response.headers[REQUEST_ID_HEADER] = request_id_of(request)
        for name, value in self.cors.headers_for(request).items():
            response.headers[name] = value
        method = request.method if request.method in METRIC_METHODS else "other"
        REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
        LATENCY.labels(route=route).observe(time.monotonic() - started)
        return response


class ApiEntrypoint(HttpRequestHandler):
    """An HTTP route of the gateway.

    ``route`` names it in metrics. Besides ``method`` the route responds to
    ``OPTIONS`` preflights itself. Errors raised by the worker, and by the
    services it calls, become envelopes.
    """

    server = ApiWebServer()

    def __init__(self, method, url, route=None, **kwargs):
        self.route = route or url
        super().__init__(f"{method},OPTIONS", url, **kwargs)

    def handle_request(self, request):
        # The web server's green thread logs with the request id too.
        token = request_id_var.set(request_id_of(request))
        try:
            return self._handle(request)
        finally:
            request_id_var.reset(token)

    def _handle(self, request):
        started = time.monotonic()
        request_id = request_id_of(request)
        if request.method == "OPTIONS":
            return self.server.finish(request, self._preflight(request), self.route, started)
        length = request.content_length
        if length is not None and length > self.server.max_body:
            error = PayloadTooLarge(f"{length} bytes", params={"limit": self.server.max_body})
            return self.server.finish(request, envelope(error, request), self.route, started)

        if length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # werkzeug reads a body without Content-Length as empty. eventlet's
            # server decodes the chunks, so the gateway reads them itself, up
            # to the same limit, and hands werkzeug a body of known length.
            try:
                body = _read_bounded(request.environ["wsgi.input"], self.server.max_body)
            except (OSError, ValueError) as error:
                _log.info("unreadable chunked body on %s: %s", self.route, error)
                body = b""
            if body is None:
                error = PayloadTooLarge("chunked body", params={"limit": self.server.max_body})
                return self.server.finish(request, envelope(error, request), self.route, started)
            request.environ["wsgi.input"] = io.BytesIO(body)
            request.environ["CONTENT_LENGTH"] = str(len(body))
            request.environ.pop("HTTP_TRANSFER_ENCODING", None)

        request.shallow = False
        request.max_content_length = self.server.max_body
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(
                self, args, kwargs,
                context_data={CONTEXT_KEY: request_id},
                handle_result=partial(self.handle_result, event),
            )
            response = self.response_from_result(event.wait())
        except Exception as exc:  # every failure becomes an envelope
            response = self._error_response(exc, request)
        return self.server.finish(request, response, self.route, started)

    def _preflight(self, request: Request) -> Response:
        headers = self.server.cors.headers_for(request)
        if not headers:
            return Response(status=204)
        headers.update({
            "Access-Control-Allow-Methods": self.method,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        })
        return Response(status=204, headers=headers)

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        return super().response_from_result(result)

    def _error_response(self, exc: Exception, request: Request) -> Response:
        if isinstance(exc, RequestEntityTooLarge):
            exc = PayloadTooLarge(params={"limit": self.server.max_body})
        if not isinstance(exc, ServiceError):
            _log.error("unexpected error on %s: %r", self.route, exc)
            exc = InternalError()
        return envelope(exc, request)


api = ApiEntrypoint.decorator
