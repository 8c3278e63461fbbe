"""The OpenAPI 3.1 description of the gateway's routes, served at /api/openapi.json."""

ERROR = {"$ref": "#/components/schemas/Error"}


def error_responses(descriptions: dict) -> dict:
    """Return OpenAPI responses with the error envelope for ``{status: description}``."""
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": ERROR}},
        }
        for status, description in descriptions.items()
    }


def _error_responses(*statuses: int) -> dict:
    descriptions = {
        400: "Invalid request: `validation_error` (with `fields`) or `bad_request`.",
        401: "Missing or unknown API key (`invalid_api_key`), or Telegram login data that does not verify.",
        403: "`not_in_telegram_group` or `limit_exceeded`.",
        404: "`no_accounts`: no game login is linked to this Telegram user.",
        409: "`login_taken`, `request_id_reused` or `request_in_progress`.",
        413: "The body is larger than the limit (`payload_too_large`).",
        429: "Too many requests (`rate_limited`); see `Retry-After`.",
        502: "The game server refused (`game_server_error`).",
        503: "A backend is down: `service_unavailable`, `game_server_unavailable` or `telegram_unavailable`.",
    }
    return error_responses({status: descriptions[status] for status in statuses})


_REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "8 to 64 letters, digits, '-' or '_'. Sent again, it returns the stored outcome "
                   "of the first registration with this id instead of registering twice.",
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
        "id": {"type": "integer"},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "username": {"type": "string"},
        "photo_url": {"type": "string"},
        "auth_date": {"type": "integer"},
        "hash": {"type": "string"},
    },
}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "TZR Host API",
        "version": "0.2.0",
        "description": "Registration, password recovery and server status for a TimeZero server.",
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An admin token whose SHA-256 is in GATEWAY.admin_tokens."},
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
                        "properties": {
                            "login": {"type": "string", "minLength": 3, "maxLength": 16,
                                      "description": "Latin or Cyrillic letters (not both), digits, spaces, "
                                                     "'_' and '-', with at least one letter."},
                            "password": {"type": "string", "minLength": 6, "maxLength": 20,
                                         "description": "Printable ASCII."},
                            "gender": {"type": "integer", "enum": [0, 1], "description": "0 female, 1 male."},
                            "telegram_id": {"type": "integer", "minimum": 1,
                                            "description": "Required unless telegram_auth is sent."},
                            "username": {"type": ["string", "null"], "maxLength": 64},
                            "telegram_auth": _TELEGRAM_AUTH,
                        },
                    }}},
                },
                "responses": {
                    "200": {"description": "Registered.", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"ok": {"const": True}, "message": {"type": "string"},
                                       "login": {"type": "string"}, "request_id": {"type": "string"}},
                    }}}},
                    **_error_responses(400, 401, 403, 409, 413, 429, 502, 503),
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
                        "properties": {
                            "password": {"type": "string", "minLength": 6, "maxLength": 20},
                            "telegram_id": {"type": "integer", "minimum": 1},
                            "telegram_auth": _TELEGRAM_AUTH,
                        },
                    }}},
                },
                "responses": {
                    "200": {"description": "Changed.", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"ok": {"const": True}, "message": {"type": "string"},
                                       "logins": {"type": "array", "items": {"type": "string"}},
                                       "request_id": {"type": "string"}},
                    }}}},
                    **_error_responses(400, 401, 404, 413, 429, 502, 503),
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
                    **_error_responses(429, 503),
                },
            },
        },
        "/health": {"get": {"summary": "The gateway process is up.",
                            "responses": {"200": {"description": "Up."}}}},
        "/ready": {"get": {"summary": "Each backend's state; 503 when any is down.",
                           "responses": {"200": {"description": "Every backend is up."},
                                         "503": {"description": "At least one backend is down."}}}},
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
