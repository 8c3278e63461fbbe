"""Battle analytics routes of the gateway: read-only queries of the ``battles`` service."""

from nameko.rpc import RpcProxy


#: Paths this module adds to the OpenAPI document.
OPENAPI_PATHS: dict = {}
OPENAPI_SCHEMAS: dict = {}


class AnalyticsRoutes:
    """Mixed into :class:`services.gateway.service.GatewayService`."""

    battles = RpcProxy("battles")
