"""The OpenAPI 3.1 description of the gateway's routes, served at /api/openapi.json."""

from importlib.metadata import PackageNotFoundError, version

from services.registration.schemas import IGNORED_WEBSITE_FIELDS as _IGNORED_FIELDS

ERROR = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}


def _package_version() -> str:
    try:
        return version("tzr-host")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


def error_responses(descriptions: dict) -> dict:
    """Return OpenAPI responses with the error envelope for ``{status: description}``."""
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": ERROR}},
        }
        for status, description in descriptions.items()
    }


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: `validation_error` (with `fields`, an invalid `X-Request-Id` included) or "
         "`bad_request` (not JSON, not an object, or nested deeper than 32 levels).",
    401: "Missing or unknown API key (`invalid_api_key`), or Telegram login data that does not verify "
         "(`telegram_auth_failed`).",
    403: "`not_in_telegram_group` or `limit_exceeded`.",
    404: "`not_found`: no such route.",
    405: "`method_not_allowed`; `Allow` lists the methods of the route.",
    409: "`login_taken`, `request_id_reused` (this id was used with other data, the password included) "
         "or `request_in_progress` (repeat the request with the same id later).",
    413: "The body, chunked or not, is larger than the limit (`payload_too_large`).",
    429: "Too many requests (`rate_limited`); see `Retry-After`.",
    500: "`internal_error`, a server fault or a configuration error such as a missing bot token.",
    502: "The game server refused (`game_server_error`), failed inside (`game_server_internal_error`) or never "
         "confirmed this registration, which was not created (`game_server_no_reply`).",
    503: "A backend is down: `service_unavailable`, `game_server_unavailable` or `telegram_unavailable`.",
}


def _error_responses(*statuses: int, overrides: dict | None = None) -> dict:
    descriptions = {status: _ERROR_DESCRIPTIONS[status] for status in statuses}
    descriptions.update(overrides or {})
    responses = error_responses(descriptions)
    if "429" in responses:
        responses["429"]["headers"] = RETRY_AFTER
    return responses


_REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "8 to 64 letters, digits, '-' or '_'; an invalid one is rejected with 400. Sent again, "
                   "it returns the stored outcome of the first registration with this id instead of "
                   "registering twice.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"},
}
LANGUAGE = {
    "name": "Accept-Language",
    "in": "header",
    "required": False,
    "description": "Messages are in Russian unless the first language is English (`en`).",
    "schema": {"type": "string"},
}

_TELEGRAM_AUTH = {
    "type": "object",
    "description": "Telegram Login Widget data as the widget returns it. When present, its hash is "
                   "verified with the bot token and the Telegram id is taken from it.",
    "required": ["id", "auth_date", "hash"],
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "username": {"type": "string"},
        "photo_url": {"type": "string"},
        "auth_date": {"type": "integer"},
        "hash": {"type": "string"},
    },
}

_BODY_REQUEST_ID = {
    "type": ["string", "null"],
    "pattern": "^[A-Za-z0-9_-]{8,64}$",
    "description": "The request id, for clients that cannot send X-Request-Id; the header wins when both "
                   "are sent, and an invalid one is rejected with 400.",
}
# Fields that the website sends and the API accepts without using them.
_IGNORED_PROPERTIES = {
    name: {"type": ["string", "null"], "description": "Accepted and ignored."} for name in _IGNORED_FIELDS
}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "TZR Host API",
        "version": _package_version(),
        "description": ("Registration, password recovery, server status, battle analytics, the shop tracker"
                        " and the operator routes of a TimeZero server's backend."),
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An admin token whose SHA-256 is in GATEWAY.admin_tokens."},
        },
        "headers": {
            "RetryAfter": {"description": "Seconds to wait before the next request.",
                           "schema": {"type": "integer", "minimum": 1}},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["ok", "error", "message", "fields", "request_id"],
                "properties": {
                    "ok": {"const": False},
                    "error": {"type": "string", "description": "Stable English code."},
                    "message": {"type": "string", "description": "Text for the user, Russian or English."},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "Per-field texts for `validation_error`."},
                    "request_id": {"type": "string"},
                },
            },
            "Status": {
                "type": "object",
                "properties": {
                    "ok": {"const": True},
                    "server_status": {"type": ["number", "null"], "description": "1 when open to everyone."},
                    "rates": {
                        "type": "object",
                        "properties": {name: {"type": ["number", "null"]}
                                       for name in ("exp", "pvp", "pve", "color_mob", "skill")},
                    },
                    "client_status": {"type": ["number", "null"], "description": "Current client version."},
                    "online": {"type": "boolean", "description": "The game port accepted a connection."},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "stale": {"type": "boolean",
                              "description": "True when a backend was down and this is the last good answer."},
                    "request_id": {"type": "string"},
                },
            },
            "Ready": {
                "type": "object",
                "required": ["ok", "checks"],
                "properties": {
                    "ok": {"type": "boolean", "description": "True when every check passed."},
                    "checks": {
                        "type": "object",
                        "description": "`redis` is the gateway's own Redis check. Each service maps to its "
                                       "backends, such as `{\"mariadb\": true, \"redis\": true}` or, for "
                                       "status, `game_port` too; a service that does not respond shows "
                                       "`{\"service\": false, \"error\": code}`.",
                        "properties": {"redis": {"type": "boolean"}},
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {"type": ["boolean", "string"]},
                        },
                    },
                },
            },
        },
    },
    "paths": {
        "/api/register": {
            "post": {
                "summary": "Create a game account and link it to a Telegram user.",
                "security": [{"apiKey": []}],
                "parameters": [_REQUEST_ID, LANGUAGE],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["login", "password", "gender"],
                        "anyOf": [{"required": ["telegram_id"]}, {"required": ["telegram_auth"]}],
                        "additionalProperties": False,
                        "properties": {
                            "login": {"type": "string", "minLength": 3, "maxLength": 16,
                                      "description": "Latin or Cyrillic letters (not both), digits, spaces, "
                                                     "'_' and '-', with at least one letter; no space at either "
                                                     "end and no two spaces in a row."},
                            "password": {"type": "string", "minLength": 6, "maxLength": 20,
                                         "description": "Printable ASCII."},
                            "gender": {"type": "integer", "enum": [0, 1], "description": "0 female, 1 male."},
                            "telegram_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1,
                                            "description": "Required unless telegram_auth is sent; must equal "
                                                           "its id when both are."},
                            "username": {"type": ["string", "null"], "maxLength": 64},
                            "telegram_auth": _TELEGRAM_AUTH,
                            "Request-Id": _BODY_REQUEST_ID,
                            **_IGNORED_PROPERTIES,
                        },
                    }}},
                },
                "responses": {
                    "200": {"description": "Registered.", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"ok": {"const": True}, "message": {"type": "string"},
                                       "login": {"type": "string"}, "request_id": {"type": "string"}},
                    }}}},
                    **_error_responses(400, 401, 403, 404, 405, 409, 413, 429, 500, 502, 503),
                },
            },
        },
        "/api/recover": {
            "post": {
                "summary": "Set a new password on every game login of a Telegram user.",
                "security": [{"apiKey": []}],
                "parameters": [_REQUEST_ID, LANGUAGE],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["password"],
                        "anyOf": [{"required": ["telegram_id"]}, {"required": ["telegram_auth"]}],
                        "additionalProperties": False,
                        "properties": {
                            "password": {"type": "string", "minLength": 6, "maxLength": 20},
                            "telegram_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                            "telegram_auth": _TELEGRAM_AUTH,
                            "Request-Id": _BODY_REQUEST_ID,
                            **_IGNORED_PROPERTIES,
                        },
                    }}},
                },
                "responses": {
                    "200": {"description": "Every linked login got the new password.",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "properties": {"ok": {"const": True}, "message": {"type": "string"},
                                               "logins": {"type": "array", "items": {"type": "string"}},
                                               "failed": {"type": "array", "items": {"type": "string"},
                                                          "maxItems": 0},
                                               "request_id": {"type": "string"}},
                            }}}},
                    **_error_responses(400, 401, 404, 405, 413, 429, 500, 503, overrides={
                        404: "`no_accounts`: no game login is linked to this Telegram user; `not_found`: no "
                             "such route.",
                    }),
                    "502": {
                        "description": "`password_partly_changed`: some logins got the new password and some "
                                       "did not; `logins` and `failed` list them, and repeating the request "
                                       "is safe. With none changed: `game_server_error`, "
                                       "`game_server_internal_error` or `game_account_not_found`.",
                        "content": {"application/json": {"schema": {"allOf": [ERROR, {
                            "type": "object",
                            "properties": {"logins": {"type": "array", "items": {"type": "string"}},
                                           "failed": {"type": "array", "items": {"type": "string"}}},
                        }]}}},
                    },
                    **error_responses({504: "`game_server_timeout`: the game server gave no usable reply, so "
                                            "the password may not have changed; repeat the request."}),
                },
            },
        },
        "/api/server/status": {
            "get": {
                "summary": "Published game constants and rates, and whether the game port is up.",
                "parameters": [LANGUAGE],
                "responses": {
                    "200": {"description": "Status, cached for a few seconds.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
                    **_error_responses(404, 405, 429, 500, 503),
                },
            },
        },
        "/health": {"get": {"summary": "The gateway process is up.",
                            "responses": {"200": {"description": "Up."}}}},
        "/ready": {"get": {
            "summary": "Each backend's state, checked at most once a second; 503 when any is down.",
            "responses": {
                "200": {"description": "Every backend is up.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
                "503": {"description": "At least one backend is down.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
            },
        }},
        "/metrics": {"get": {"summary": "Prometheus metrics in text format.",
                             "responses": {"200": {"description": "Metrics."}}}},
        "/api/openapi.json": {"get": {"summary": "This document.",
                                      "responses": {"200": {"description": "OpenAPI 3.1."}}}},
    },
}


def document(*parts) -> dict:
    """Return the OpenAPI document with the paths and schemas of route modules added.

    Each part is a module (or any object) with ``OPENAPI_PATHS`` and
    optionally ``OPENAPI_SCHEMAS``; a path or schema defined twice is an error.
    """
    result = {**OPENAPI, "paths": dict(OPENAPI["paths"])}
    result["components"] = {**OPENAPI["components"], "schemas": dict(OPENAPI["components"]["schemas"])}
    for part in parts:
        for target, extra in ((result["paths"], getattr(part, "OPENAPI_PATHS", {})),
                              (result["components"]["schemas"], getattr(part, "OPENAPI_SCHEMAS", {}))):
            for name, value in extra.items():
                if name in target:
                    raise ValueError(f"OpenAPI entry {name!r} is defined twice")
                target[name] = value
    return result
