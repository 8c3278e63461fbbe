"""Shop tracker routes of the gateway: the ``shop`` service's read API, and starting a snapshot.

The read routes take an API key, like the analytics routes, and pass their
query string to the service unchanged. The service checks it and returns
400 naming each bad parameter. The admin routes take the bearer token.
"""

from nameko.rpc import RpcProxy

from services.common.errors import ValidationFailed
from services.gateway.admin import _json_object
from services.gateway.openapi import LANGUAGE, error_responses
from services.gateway.web import api, json_response, request_id_of


def _query(request) -> dict:
    # A repeated parameter stays a list, which the service rejects by name.
    return {name: values[0] if len(values) == 1 else values for name, values in request.args.lists()}


def _no_query(request) -> None:
    if request.args:
        raise ValidationFailed("this route takes no query parameters",
                               fields={name: "param.unknown" for name in request.args})


class ShopRoutes:
    """Mixed into :class:`services.gateway.service.GatewayService`."""

    shop = RpcProxy("shop")

    def _call_shop(self, method: str, *args):
        # Return 503 at once when no shop service consumes its queue, instead of after the timeout.
        return self._call("shop", method, *args, timeout="shop")

    def _shop_read(self, request, route: str, method: str, *args, query: bool = True):
        self.guard.admit(request, route)
        if query:
            result = self._call_shop(method, *args, _query(request))
        else:
            _no_query(request)
            result = self._call_shop(method, *args)
        return self._ok(request, **result)

    @api("GET", "/api/shop/shops", route="shop_shops")
    def shop_shops(self, request):
        return self._shop_read(request, "shop_shops", "shops", query=False)

    @api("GET", "/api/shop/categories", route="shop_categories")
    def shop_categories(self, request):
        return self._shop_read(request, "shop_categories", "categories", query=False)

    @api("GET", "/api/shop/items", route="shop_items")
    def shop_items(self, request):
        return self._shop_read(request, "shop_items", "search_items")

    @api("GET", "/api/shop/items/<item_id>", route="shop_item")
    def shop_item(self, request, item_id):
        return self._shop_read(request, "shop_item", "get_item", item_id)

    @api("GET", "/api/shop/templates/<template_id>/prices", route="shop_template_prices")
    def shop_template_prices(self, request, template_id):
        return self._shop_read(request, "shop_template_prices", "template_prices", template_id)

    @api("GET", "/api/shop/snapshots", route="shop_snapshots")
    def shop_snapshots(self, request):
        return self._shop_read(request, "shop_snapshots", "snapshots")

    @api("GET", "/api/shop/snapshots/<snapshot_id>", route="shop_snapshot")
    def shop_snapshot(self, request, snapshot_id):
        return self._shop_read(request, "shop_snapshot", "get_snapshot", snapshot_id, query=False)

    @api("GET", "/api/shop/diff", route="shop_diff")
    def shop_diff(self, request):
        return self._shop_read(request, "shop_diff", "diff")

    @api("GET", "/api/shop/changes", route="shop_changes")
    def shop_changes(self, request):
        return self._shop_read(request, "shop_changes", "changes")

    @api("GET", "/api/shop/freshness", route="shop_freshness")
    def shop_freshness(self, request):
        return self._shop_read(request, "shop_freshness", "freshness")

    @api("POST", "/api/admin/shop/snapshots", route="admin_shop_snapshot_start")
    def admin_shop_snapshot_start(self, request):
        rejected = self._reject_admin(request, "admin_shop_snapshot_start")
        if rejected is not None:
            return rejected
        body = _json_object(request)
        unknown = {name: "field.unknown" for name in body if name != "shop"}
        if unknown:
            raise ValidationFailed("unknown fields", fields=unknown)
        if "shop" not in body:
            raise ValidationFailed("shop is required", fields={"shop": "field.required"})
        if not isinstance(body["shop"], str):
            raise ValidationFailed("shop must be a string", fields={"shop": "field.string"})
        result = self._call_shop("start_snapshot", body["shop"])
        # 202 means the snapshot runs in the background, and 200 that a running one was joined.
        return json_response({"ok": True, **result, "request_id": request_id_of(request)},
                             status=200 if result["joined"] else 202)

    @api("GET", "/api/admin/shop/snapshots/<snapshot_id>", route="admin_shop_snapshot_progress")
    def admin_shop_snapshot_progress(self, request, snapshot_id):
        rejected = self._reject_admin(request, "admin_shop_snapshot_progress")
        if rejected is not None:
            return rejected
        _no_query(request)
        snapshot = self._call_shop("get_snapshot", snapshot_id)
        return json_response({"ok": True, "snapshot": snapshot, "request_id": request_id_of(request)})


# ---------------------------------------------------------------------------
# OpenAPI.


def _param(name: str, schema: dict, description: str, where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema}


_CHANGE_KINDS = ["added", "removed", "price_changed", "quantity_changed", "seller_changed", "durability_changed"]
_PAGE = [
    _param("page", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}, "Page number, from 1."),
    _param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Rows per page."),
]
_SHOP = _param("shop", {"type": "string", "maxLength": 32}, "A shop code, such as moscow; an unknown one is a 404.")
_CATEGORY = _param("category", {"type": "string", "maxLength": 1}, "A category code (see /api/shop/categories).")
_KIND = _param("kind", {"type": "string", "enum": _CHANGE_KINDS}, "Only changes of this kind.")
_ITEM_ID = _param("item_id", {"type": "integer", "minimum": 1}, "The game's item id.", "path", True)
_SNAPSHOT_ID = _param("snapshot_id", {"type": "integer", "minimum": 1}, "The snapshot's id.", "path", True)
_TEMPLATE_ID = _param("template_id", {"type": "integer", "minimum": 1}, "The template's id (items carry it).",
                      "path", True)

_READ_ERRORS = {
    400: "A bad parameter (`validation_error`); `fields` names each one.",
    401: "Missing or unknown API key (`invalid_api_key`).",
    429: "Too many requests (`rate_limited`); see `Retry-After`.",
    503: "The shop service or its database is down (`service_unavailable`).",
}
_NOT_FOUND = {
    "shop": "`shop_not_found`: no shop with this code is configured.",
    "item": "`shop_item_not_found` (no snapshot has this item) or `shop_not_found`.",
    "snapshot": "`shop_snapshot_not_found`: no snapshot has this id.",
    "template": "`shop_template_not_found` or `shop_not_found`.",
}


def _ok(schema: dict, description: str) -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _get(summary: str, parameters: list, schema: dict, description: str, not_found: str | None = None) -> dict:
    errors = dict(_READ_ERRORS)
    if not_found:
        errors[404] = _NOT_FOUND[not_found]
    return {"get": {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": [*parameters, LANGUAGE],
        "responses": {**_ok(schema, description), **error_responses(errors)},
    }}


def _page_of(item: dict, **extra) -> dict:
    return {"type": "object", "properties": {
        "ok": {"const": True}, "items": {"type": "array", "items": item}, "total": {"type": "integer"},
        "page": {"type": "integer"}, "limit": {"type": "integer"}, "has_more": {"type": "boolean"},
        "request_id": {"type": "string"}, **extra}}


_NUMBER = {"type": ["number", "null"]}
_INT = {"type": ["integer", "null"]}
_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

OPENAPI_SCHEMAS: dict = {
    "ShopItem": {
        "type": "object",
        "description": "An item on sale: its state in the snapshot that saw it and its typed attributes. "
                       "An attribute the game sent but that could not be read is null and named in "
                       "`bad_attributes`.",
        "properties": {
            "item_id": {"type": "integer"}, "shop": {"type": "string"}, "category": {"type": "string"},
            "template_id": _INT, "template": _TEXT, "type": _TEXT, "txt": {"type": "string"},
            "price": _NUMBER, "quantity": _INT, "quality": _INT, "max_quality": _INT,
            "owner": {**_TEXT, "description": "The seller; null for NPC stock."},
            "npc_stock": {"type": "boolean", "description": "Unlimited state stock."},
            "weight": _NUMBER, "damage": {"type": ["array", "null"]}, "protection": {"type": ["array", "null"]},
            "caliber": _TEXT, "range": _INT, "grouping": _INT, "piercing": {**_NUMBER, "description": "Percent."},
            "magazine": _INT, "reload_od": _INT, "skill": _INT, "attack_modes": {"type": ["array", "null"]},
            "slots": _TEXT, "equip_od": _INT, "requirements": {"type": ["object", "null"]},
            "bonuses": {"type": ["object", "null"]}, "build_in": {"type": ["array", "null"]},
            "section": _INT, "level": _INT, "listed_at": _TIME,
            "bad_attributes": {"type": "array", "items": {"type": "string"}},
            "first_seen_at": _TIME, "last_seen_at": _TIME,
            "gone_at": {**_TIME, "description": "A later complete read of its category no longer listed it."},
            "snapshot_id": {"type": "integer"}, "seen_at": _TIME,
        },
    },
    "ShopSnapshot": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "shop": {"type": "string"},
            "trigger": {"type": "string", "enum": ["schedule", "rpc"]},
            "status": {"type": "string", "enum": ["running", "complete", "partial", "failed"],
                       "description": "`partial`: some categories failed; they are left out of diffs."},
            "started_at": _TIME, "updated_at": _TIME, "finished_at": _TIME,
            "categories_total": {"type": "integer"}, "categories_done": {"type": "integer"},
            "categories_failed": {"type": "integer"}, "current_category": _TEXT,
            "pages": {"type": "integer"}, "items": {"type": "integer"},
            "flagged": {"type": "integer", "description": "Items with a bad attribute."},
            "previous_id": _INT,
            "changes": {"type": ["object", "null"], "description": "Change counts by kind against previous_id."},
            "error": _TEXT,
            "categories": {"type": "array", "description": "One snapshot only: each category read so far.",
                           "items": {"type": "object", "properties": {
                               "category": {"type": "string"}, "status": {"type": "string"},
                               "pages": {"type": "integer"}, "items": {"type": "integer"},
                               "groups": {"type": "integer"}, "group_shortfall": {"type": "integer"},
                               "malformed": {"type": "integer"}, "error": _TEXT, "finished_at": _TIME}}},
        },
    },
    "ShopChange": {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": _CHANGE_KINDS}, "item_id": {"type": "integer"},
            "category": {"type": "string"}, "template_id": _INT, "txt": _TEXT,
            "old_price": _NUMBER, "new_price": _NUMBER, "old_quantity": _INT, "new_quantity": _INT,
            "old_quality": _INT, "new_quality": _INT, "old_owner": _TEXT, "new_owner": _TEXT,
            "id": {"type": "integer", "description": "Change feed only."},
            "shop": {"type": "string"}, "snapshot_id": {"type": "integer"},
            "previous_snapshot_id": {"type": "integer"}, "detected_at": _TIME,
        },
    },
}

_SNAPSHOT_ANSWER = {"type": "object", "properties": {
    "ok": {"const": True}, "snapshot": _ref("ShopSnapshot"),
    "joined": {"type": "boolean", "description": "A snapshot of the shop was already running; this is it."},
    "request_id": {"type": "string"}}}
_BEARER = [{"bearerAuth": []}]
_ADMIN_ERRORS = {
    400: "A bad body (`bad_request`, or `validation_error` naming `shop`).",
    401: "Missing or unknown bearer token (`invalid_admin_token`), with `WWW-Authenticate: Bearer`.",
    404: "`shop_not_found`.",
    429: "Too many requests from this address (`rate_limited`).",
    503: "`shop_disabled` (the shop has no bot account) or `service_unavailable`.",
}

_SHOP_ENTRY = {"type": "object", "properties": {
    "code": {"type": "string"}, "name": {"type": "string"},
    "enabled": {"type": "boolean", "description": "The shop has a bot account and is read."},
    "last_snapshot": {"type": ["object", "null"]}, "running_snapshot": _INT}}
_CATEGORY_ENTRY = {"type": "object", "properties": {
    name: {"type": "string"} for name in ("code", "name_ru", "name_en", "group", "group_ru", "group_en")}}


def _list_of(item: dict) -> dict:
    return {"type": "object", "properties": {"ok": {"const": True}, "items": {"type": "array", "items": item},
                                             "request_id": {"type": "string"}}}


OPENAPI_PATHS: dict = {
    "/api/shop/shops": _get("The configured shops, with their last and running snapshot.", [],
                            _list_of(_SHOP_ENTRY), "The shops."),
    "/api/shop/categories": _get("The categories read, in reading order (the bot's own listings are not read).",
                                 [], _list_of(_CATEGORY_ENTRY), "The categories."),
    "/api/shop/items": _get(
        "Search the items on sale now (in the newest complete read of their category).",
        [*_PAGE, _SHOP, _CATEGORY,
         _param("name", {"type": "string", "maxLength": 100}, "Part of the display name or template code, any case."),
         _param("type", {"type": "string", "maxLength": 32}, "The template's type code, exactly, such as 1.7."),
         _param("min_price", {"type": "number", "minimum": 0}, "Lowest price, inclusive."),
         _param("max_price", {"type": "number", "minimum": 0}, "Highest price, inclusive; not below min_price."),
         _param("seller", {"type": "string", "maxLength": 64}, "The seller's nickname, exactly."),
         _param("template_id", {"type": "integer", "minimum": 1}, "One template."),
         _param("npc_stock", {"type": "boolean"}, "Only NPC stock (true) or only players' offers (false)."),
         _param("sort", {"type": "string", "enum": ["price", "-price", "name", "newest"], "default": "price"},
                "Order: price up or down, display name, or newest first seen.")],
        _page_of(_ref("ShopItem")), "A page of items.", "shop"),
    "/api/shop/items/{item_id}": _get(
        "One item: its attributes, its state in each snapshot, its changes and its template's price history.",
        [_ITEM_ID, _param("shop", {"type": "string", "maxLength": 32},
                          "Needed when the id was seen in several shops (otherwise a 400 naming shop).")],
        {"type": "object", "description": "A ShopItem plus `history` (price, quantity, quality, owner per "
                                          "snapshot, newest first), `changes` and `template_prices`.",
         "properties": {"ok": {"const": True}, "history": {"type": "array"}, "changes": {"type": "array"},
                        "template_prices": {"type": "array"}, "raw": {"type": "object"}}},
        "The item.", "item"),
    "/api/shop/templates/{template_id}/prices": _get(
        "A template's price history: offers, units and min, median, mean and max price per snapshot.",
        [_TEMPLATE_ID, _SHOP,
         _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Snapshots, newest.")],
        {"type": "object", "properties": {"ok": {"const": True}, "id": {"type": "integer"},
                                          "name": {"type": "string"}, "type": {"type": "string"},
                                          "prices": {"type": "array"}}},
        "The template and its prices.", "template"),
    "/api/shop/snapshots": _get(
        "Snapshots, newest first.",
        [*_PAGE, _SHOP, _param("status", {"type": "string", "enum": ["running", "complete", "partial", "failed"]},
                               "Only snapshots in this state.")],
        _page_of(_ref("ShopSnapshot")), "A page of snapshots.", "shop"),
    "/api/shop/snapshots/{snapshot_id}": _get(
        "One snapshot and how each category went.", [_SNAPSHOT_ID],
        {"allOf": [_ref("ShopSnapshot"), {"type": "object", "properties": {"ok": {"const": True}}}]},
        "The snapshot.", "snapshot"),
    "/api/shop/diff": _get(
        "What changed between two finished snapshots of a shop; by default its last two. Only categories read "
        "to their end in both are compared.",
        [*_PAGE, _SHOP, _KIND,
         _param("from", {"type": "integer", "minimum": 1}, "The earlier snapshot (default: the one before `to`)."),
         _param("to", {"type": "integer", "minimum": 1}, "The later snapshot (default: the shop's newest).")],
        _page_of(_ref("ShopChange"), **{
            "shop": {"type": "string"}, "from": {"type": "object"}, "to": {"type": "object"},
            "compared_categories": {"type": "array", "items": {"type": "string"}},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}}}),
        "The changes, by kind and item id.", "snapshot"),
    "/api/shop/changes": _get(
        "The change feed: changes detected since a time, oldest first.",
        [*_PAGE, _SHOP, _KIND, _CATEGORY,
         _param("since", {"type": "string"}, "ISO 8601 date or date-time, inclusive (default: 24 hours ago)."),
         _param("until", {"type": "string"}, "ISO 8601, exclusive; later than since.")],
        _page_of(_ref("ShopChange"), since={"type": "string"}), "A page of changes.", "shop"),
    "/api/shop/freshness": _get(
        "Per shop and category: when it was last read to its end, its age, and whether it is stale (older than "
        "two snapshot intervals, or never read).",
        [_SHOP],
        {"type": "object", "properties": {"ok": {"const": True}, "interval_seconds": {"type": "number"},
                                          "items": {"type": "array"}}},
        "Freshness per shop.", "shop"),
    "/api/admin/shop/snapshots": {"post": {
        "summary": "Start a snapshot of a shop and return at once; read its progress at the snapshot's route.",
        "security": _BEARER,
        "parameters": [LANGUAGE],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["shop"], "additionalProperties": False,
            "properties": {"shop": {"type": "string", "maxLength": 32}}}}}},
        "responses": {
            "202": {"description": "Started; it runs in the background.",
                    "content": {"application/json": {"schema": _SNAPSHOT_ANSWER}}},
            **_ok(_SNAPSHOT_ANSWER, "A snapshot of the shop was already running; `joined` is true."),
            **error_responses(_ADMIN_ERRORS),
        },
    }},
    "/api/admin/shop/snapshots/{snapshot_id}": {"get": {
        "summary": "A snapshot's progress: categories done and failed, pages, items, the current category.",
        "security": _BEARER,
        "parameters": [_SNAPSHOT_ID, LANGUAGE],
        "responses": {
            **_ok({"type": "object", "properties": {"ok": {"const": True}, "snapshot": _ref("ShopSnapshot"),
                                                    "request_id": {"type": "string"}}}, "The snapshot."),
            **error_responses({**_ADMIN_ERRORS, 404: "`shop_snapshot_not_found`."}),
        },
    }},
}
