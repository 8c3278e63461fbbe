"""Operator routes of the gateway: battle-log collection, behind a bearer token."""

from nameko.rpc import RpcProxy


#: Paths this module adds to the OpenAPI document.
OPENAPI_PATHS: dict = {}
OPENAPI_SCHEMAS: dict = {}


class AdminRoutes:
    """Mixed into :class:`services.gateway.service.GatewayService`."""

    ingest = RpcProxy("ingest")
