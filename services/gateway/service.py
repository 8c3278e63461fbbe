"""The ``gateway`` service: the HTTP API in front of the other services."""

import time
from dataclasses import dataclass
from logging import getLogger

import eventlet
import redis as redis_library
from eventlet.semaphore import Semaphore
from limits import parse as parse_limit
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.wrappers import Response

from services.common import rpc
from services.common.config import describe_setting, read_number
from services.common.config import section as config_section
from services.common.errors import PasswordPartlyChanged, ServiceError, ServiceUnavailable, ValidationFailed
from services.common.messages import pick_language, render
from services.common.redis import Redis
from services.common.request_context import RequestContext
from services.registration.schemas import REQUEST_ID_RE
from services.gateway.guard import Guard
from services.gateway import admin, analytics, openapi, shop
from services.gateway.web import (
    CONFIG_SECTION,
    REGISTRY,
    REQUEST_ID_ENVIRON,
    REQUEST_ID_HEADER,
    api,
    envelope,
    json_response,
    read_json,
    request_id_of,
)


_log = getLogger(__name__)

# Seconds to wait for each service; a registration waits for the game server.
DEFAULT_TIMEOUTS = {
    "register": 60.0, "recover": 60.0, "status": 5.0, "ready": 2.0, "battles": 10.0, "ingest": 10.0,
    "shop": 10.0,
}
# Limits per client address for the routes that create or change accounts.
ACCOUNT_ROUTE_LIMIT = "10/minute"
# Seconds that /ready reuses its result, so frequent probes cost one round of checks.
READY_CACHE_SECONDS = 1.0
BODY_REQUEST_ID = "Request-Id"


def _presented_request_id(request, payload) -> str | None:
    """Return the request id that the client sent, or None; raise ValidationFailed when it is invalid.

    The account routes use the id as the idempotency key, so an invalid one
    is rejected instead of being replaced: a new id would make a retry
    register again and get login_taken for the client's own account.
    """
    presented = request.headers.get(REQUEST_ID_HEADER)
    if presented is not None:
        if not REQUEST_ID_RE.fullmatch(presented):
            raise ValidationFailed("invalid X-Request-Id", fields={REQUEST_ID_HEADER: "request_id.format"})
        return presented
    body_id = payload.get(BODY_REQUEST_ID) if isinstance(payload, dict) else None
    if body_id is None:
        return None
    if not (isinstance(body_id, str) and REQUEST_ID_RE.fullmatch(body_id)):
        raise ValidationFailed("invalid Request-Id", fields={BODY_REQUEST_ID: "request_id.format"})
    return body_id


@dataclass(frozen=True)
class GatewaySettings:
    """RPC deadlines and the account routes' limit, from the GATEWAY section."""

    timeouts: dict
    account_limit: str


class GatewaySettingsProvider(DependencyProvider):
    """Gives workers the checked :class:`GatewaySettings`."""

    def setup(self):
        section = config_section(self.container.config, CONFIG_SECTION)
        timeouts = dict(DEFAULT_TIMEOUTS)
        configured = section.get("timeouts") or {}
        for name in configured:
            if name not in timeouts:
                raise ValueError(f"config {CONFIG_SECTION}.timeouts has unknown entry {name!r}")
            timeouts[name] = read_number(configured, f"{CONFIG_SECTION}.timeouts", name, None, minimum=0.001)
        account_limit = str(section.get("account_limit", ACCOUNT_ROUTE_LIMIT))
        try:
            parse_limit(account_limit)
        except ValueError:
            raise ValueError(f"{describe_setting(CONFIG_SECTION, 'account_limit')} is not a rate limit"
                             f" such as 10/minute: {account_limit!r}") from None
        self.settings = GatewaySettings(timeouts=timeouts, account_limit=account_limit)

    def get_dependency(self, worker_ctx):
        return self.settings


class ReadyCache(DependencyProvider):
    """The gateway's last /ready result, reused for READY_CACHE_SECONDS.

    Requests that come while it is out of date wait for one round of checks.
    """

    def setup(self):
        self._lock = Semaphore()
        self._answer: tuple[float, tuple[dict, int]] | None = None

    def get(self, compute) -> tuple[dict, int]:
        with self._lock:
            if self._answer is None or time.monotonic() - self._answer[0] >= READY_CACHE_SECONDS:
                self._answer = (time.monotonic(), compute())
            return self._answer[1]

    def get_dependency(self, worker_ctx):
        return self


OPENAPI = openapi.document(analytics, admin, shop)


class GatewayService(analytics.AnalyticsRoutes, admin.AdminRoutes, shop.ShopRoutes):
    """Serves ``/api/*``, ``/health``, ``/ready``, ``/metrics`` and ``/api/openapi.json``.

    The analytics, admin and shop routes come from the mixins in
    :mod:`services.gateway.analytics`, :mod:`services.gateway.admin` and
    :mod:`services.gateway.shop`.
    """

    name = "gateway"

    context = RequestContext()
    guard = Guard()
    redis = Redis("REDIS")
    registration = RpcProxy("registration")
    status = RpcProxy("status")
    consumers = rpc.RpcConsumers()
    settings = GatewaySettingsProvider()
    ready_cache = ReadyCache()

    def _ok(self, request, message_key: str | None = None, **fields) -> Response:
        body = {"ok": True}
        if message_key:
            body["message"] = render(message_key, pick_language(request.headers.get("Accept-Language")))
        body.update(fields)
        body["request_id"] = request_id_of(request)
        return json_response(body)

    def _call(self, service: str, method: str, *args, timeout: str):
        """Call ``service.method`` through rpc.call, or raise ServiceUnavailable at once when no instance runs."""
        if not self.consumers.running(service):
            raise ServiceUnavailable(f"no instance of the {service} service is running")
        return rpc.call(getattr(self, service), method, *args, timeout=self.settings.timeouts[timeout])

    def _adopt_request_id(self, request, payload) -> None:
        """Check the client's request id and use one sent in the body as the request's id."""
        presented = _presented_request_id(request, payload)
        if presented is not None and REQUEST_ID_HEADER not in request.headers:
            # The website's older form sends the id in the body; it is then
            # the idempotency key and the id of every log line and response.
            request.environ[REQUEST_ID_ENVIRON] = presented
            self.context.set_request_id(presented)

    @api("POST", "/api/register", route="register")
    def register(self, request):
        self.guard.admit(request, "register", ip_limit=self.settings.account_limit)
        payload = read_json(request)
        self._adopt_request_id(request, payload)
        result = self._call("registration", "register", payload, request_id_of(request), timeout="register")
        return self._ok(request, "registered", login=result["login"])

    @api("POST", "/api/recover", route="recover")
    def recover(self, request):
        self.guard.admit(request, "recover", ip_limit=self.settings.account_limit)
        payload = read_json(request)
        self._adopt_request_id(request, payload)
        result = self._call("registration", "recover", payload, request_id_of(request), timeout="recover")
        failed = result.get("failed") or []
        if failed:
            # Some passwords changed: the response is an error envelope that lists both sides.
            error = PasswordPartlyChanged(
                f"recovery changed {len(result['logins'])} of {len(result['logins']) + len(failed)} logins",
                params={"changed": ", ".join(result["logins"]), "failed": ", ".join(failed)},
            )
            return envelope(error, request, extra={"logins": result["logins"], "failed": failed})
        return self._ok(request, "password_changed", logins=result["logins"], failed=[])

    @api("GET", "/api/server/status", route="status")
    def server_status(self, request):
        self.guard.admit(request, "status", authenticate=False)
        status = self._call("status", "get_status", timeout="status")
        return self._ok(request, **status)

    @api("GET", "/health", route="health")
    def health(self, request):
        return json_response({"ok": True, "service": "gateway"})

    @api("GET", "/ready", route="ready")
    def ready(self, request):
        body, status = self.ready_cache.get(self._check_readiness)
        return json_response(body, status=status)

    def _check_readiness(self) -> tuple[dict, int]:
        checks = {"redis": self._redis_ready()}
        services = (("registration", self.registration), ("status", self.status),
                    ("battles", self.battles), ("ingest", self.ingest), ("shop", self.shop))

        def check(proxy):
            # The services are asked at once, so one that is down costs one timeout, not one each.
            try:
                if not self.consumers.running(proxy.service_name):
                    raise ServiceUnavailable(f"no instance of the {proxy.service_name} service is running")
                return rpc.call(proxy, "ready", timeout=self.settings.timeouts["ready"])
            except ServiceError as error:
                return {"service": False, "error": error.code}

        pool = eventlet.GreenPool(len(services))
        for (service, _), result in zip(services, pool.imap(check, [proxy for _, proxy in services])):
            checks[service] = result
        ready = checks["redis"] and all(
            isinstance(check, dict) and all(check.values()) for name, check in checks.items() if name != "redis"
        )
        return {"ok": ready, "checks": checks}, 200 if ready else 503

    def _redis_ready(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis_library.RedisError:
            return False

    @api("GET", "/metrics", route="metrics")
    def metrics(self, request):
        return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

    @api("GET", "/api/openapi.json", route="openapi")
    def openapi(self, request):
        return json_response(OPENAPI)
