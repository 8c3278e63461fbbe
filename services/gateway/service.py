"""The ``gateway`` service: the HTTP API in front of the other services."""

import json
from dataclasses import dataclass
from logging import getLogger

import eventlet
import redis as redis_library
from limits import parse as parse_limit
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.wrappers import Response

from services.common import rpc
from services.common.config import section as config_section
from services.common.errors import BadRequest, ServiceError
from services.common.messages import pick_language, render
from services.common.redis import Redis
from services.common.request_context import RequestContext
from services.registration.schemas import REQUEST_ID_RE
from services.gateway.guard import Guard
from services.gateway import admin, analytics, openapi
from services.gateway.web import CONFIG_SECTION, REGISTRY, REQUEST_ID_ENVIRON, api, json_response, request_id_of


_log = getLogger(__name__)

# Seconds to wait for each service; a registration waits for the game server.
DEFAULT_TIMEOUTS = {
    "register": 60.0, "recover": 60.0, "status": 5.0, "ready": 2.0, "battles": 10.0, "ingest": 10.0,
}
# Limits per client address for the routes that create or change accounts.
ACCOUNT_ROUTE_LIMIT = "10/minute"


def _json_body(request) -> object:
    content_type = request.mimetype or ""
    if content_type != "application/json":
        raise BadRequest(f"content type {content_type!r}", params={"reason": "Content-Type must be application/json"})
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON: {error}", params={"reason": "the body is not valid JSON"}) from None


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
        for name, value in (section.get("timeouts") or {}).items():
            if name not in timeouts:
                raise ValueError(f"config {CONFIG_SECTION}.timeouts has unknown entry {name!r}")
            timeouts[name] = float(value)
        account_limit = str(section.get("account_limit", ACCOUNT_ROUTE_LIMIT))
        parse_limit(account_limit)
        self.settings = GatewaySettings(timeouts=timeouts, account_limit=account_limit)

    def get_dependency(self, worker_ctx):
        return self.settings


OPENAPI = openapi.document(analytics, admin)


class GatewayService(analytics.AnalyticsRoutes, admin.AdminRoutes):
    """Serves ``/api/*``, ``/health``, ``/ready``, ``/metrics`` and ``/api/openapi.json``.

    The analytics and admin routes come from the mixins in
    :mod:`services.gateway.analytics` and :mod:`services.gateway.admin`.
    """

    name = "gateway"

    context = RequestContext()
    guard = Guard()
    redis = Redis("REDIS")
    registration = RpcProxy("registration")
    status = RpcProxy("status")
    settings = GatewaySettingsProvider()

    def _ok(self, request, message_key: str | None = None, **fields) -> Response:
        body = {"ok": True}
        if message_key:
            body["message"] = render(message_key, pick_language(request.headers.get("Accept-Language")))
        body.update(fields)
        body["request_id"] = request_id_of(request)
        return json_response(body)

    @api("POST", "/api/register", route="register")
    def register(self, request):
        self.guard.admit(request, "register", ip_limit=self.settings.account_limit)
        payload = _json_body(request)
        request_id = request_id_of(request)
        body_id = payload.get("Request-Id") if isinstance(payload, dict) else None
        if isinstance(body_id, str) and REQUEST_ID_RE.fullmatch(body_id) and "X-Request-Id" not in request.headers:
            # The website's older form sends the id in the body; it is then
            # the idempotency key and the id of every log line and response.
            request_id = str(body_id)
            request.environ[REQUEST_ID_ENVIRON] = request_id
            self.context.set_request_id(request_id)
        result = rpc.call(self.registration, "register", payload, request_id, timeout=self.settings.timeouts["register"])
        return self._ok(request, "registered", login=result["login"])

    @api("POST", "/api/recover", route="recover")
    def recover(self, request):
        self.guard.admit(request, "recover", ip_limit=self.settings.account_limit)
        payload = _json_body(request)
        result = rpc.call(self.registration, "recover", payload, request_id_of(request),
                          timeout=self.settings.timeouts["recover"])
        return self._ok(request, "password_changed", logins=result["logins"])

    @api("GET", "/api/server/status", route="status")
    def server_status(self, request):
        self.guard.admit(request, "status", authenticate=False)
        status = rpc.call(self.status, "get_status", timeout=self.settings.timeouts["status"])
        return self._ok(request, **status)

    @api("GET", "/health", route="health")
    def health(self, request):
        return json_response({"ok": True, "service": "gateway"})

    @api("GET", "/ready", route="ready")
    def ready(self, request):
        checks = {"redis": self._redis_ready()}
        services = (("registration", self.registration), ("status", self.status),
                    ("battles", self.battles), ("ingest", self.ingest))

        def check(proxy):
            # The services are asked at once, so one that is down costs one timeout, not one each.
            try:
                return rpc.call(proxy, "ready", timeout=self.settings.timeouts["ready"])
            except ServiceError as error:
                return {"service": False, "error": error.code}

        pool = eventlet.GreenPool(len(services))
        for (service, _), result in zip(services, pool.imap(check, [proxy for _, proxy in services])):
            checks[service] = result
        ready = checks["redis"] and all(
            isinstance(check, dict) and all(check.values()) for name, check in checks.items() if name != "redis"
        )
        return json_response({"ok": ready, "checks": checks}, status=200 if ready else 503)

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
