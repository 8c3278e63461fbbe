"""Operator routes of the gateway: battle-log collection, behind a bearer token.

Every route takes ``Authorization: Bearer <token>``, checked against the
``GATEWAY.admin_tokens`` hashes after the per-address rate limit, and calls
the ``ingest`` service's ``collect_*`` methods.
"""


from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import rpc
from services.common.errors import BadRequest, InvalidAdminToken, ValidationFailed
from services.gateway.openapi import LANGUAGE, error_responses
from services.gateway.web import api, envelope, json_response, read_json, request_id_of


#: The challenge of a 401 response (RFC 6750).
BEARER_CHALLENGE = 'Bearer realm="tzr-admin"'
LIST_PARAMETERS = ("limit", "status")
DEFAULT_LIST_LIMIT = 20


def _json_object(request) -> dict:
    body = read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object", params={"reason": "reason.json_object"})
    return body


def _list_arguments(request) -> tuple[int, str | None]:
    fields = {name: "field.unknown" for name in request.args if name not in LIST_PARAMETERS}
    limit = request.args.get("limit")
    if limit is None:
        limit = DEFAULT_LIST_LIMIT
    elif limit.isascii() and limit.isdigit() and len(limit) <= 6:
        limit = int(limit)
    else:
        fields["limit"] = "field.integer"
    if fields:
        raise ValidationFailed("invalid query parameters", fields)
    return limit, request.args.get("status")


def _job_id(value: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    raise ValidationFailed(f"invalid job id {value[:40]!r}", {"job_id": "collect.job_id"})


def _answer(request, status: int = 200, **fields) -> Response:
    return json_response({"ok": True, **fields, "request_id": request_id_of(request)}, status=status)


class AdminRoutes:
    """Mixed into :class:`services.gateway.service.GatewayService`."""

    ingest = RpcProxy("ingest")

    def _reject_admin(self, request, route: str) -> Response | None:
        """Return the 401 response when the bearer token is missing or wrong, else None."""
        try:
            self.guard.admit_admin(request, route)
        except InvalidAdminToken as error:
            response = envelope(error, request)
            response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
            return response
        return None

    def _call_ingest(self, method: str, *args):
        return rpc.call(self.ingest, method, *args, timeout=self.settings.timeouts["ingest"])

    @api("POST", "/api/admin/collect", route="admin_collect_start")
    def admin_collect_start(self, request):
        rejected = self._reject_admin(request, "admin_collect_start")
        if rejected is not None:
            return rejected
        job = self._call_ingest("collect_start", _json_object(request))
        return _answer(request, job=job)

    @api("GET", "/api/admin/collect", route="admin_collect_jobs")
    def admin_collect_jobs(self, request):
        rejected = self._reject_admin(request, "admin_collect_jobs")
        if rejected is not None:
            return rejected
        limit, status = _list_arguments(request)
        return _answer(request, jobs=self._call_ingest("collect_jobs", limit, status))

    @api("GET", "/api/admin/collect/<job_id>", route="admin_collect_progress")
    def admin_collect_progress(self, request, job_id):
        rejected = self._reject_admin(request, "admin_collect_progress")
        if rejected is not None:
            return rejected
        return _answer(request, job=self._call_ingest("collect_progress", _job_id(job_id)))

    @api("POST", "/api/admin/collect/<job_id>/abort", route="admin_collect_abort")
    def admin_collect_abort(self, request, job_id):
        rejected = self._reject_admin(request, "admin_collect_abort")
        if rejected is not None:
            return rejected
        return _answer(request, job=self._call_ingest("collect_abort", _job_id(job_id)))


# -- OpenAPI

_BEARER = [{"bearerAuth": []}]
_JOB_REF = {"$ref": "#/components/schemas/CollectJob"}
_JOB_ID = {
    "name": "job_id", "in": "path", "required": True, "description": "The job's id; anything else is a 400.",
    "schema": {"type": "integer", "minimum": 1},
}
_ERRORS = {
    400: "Invalid request: `validation_error` with a message per field, or `bad_request`.",
    401: "Missing or unknown bearer token (`invalid_admin_token`), with `WWW-Authenticate: Bearer`.",
    404: "`collect_job_not_found`: no job has this id.",
    409: "`collect_job_running`: a job of this direction is already running.",
    413: "The body is larger than the limit (`payload_too_large`).",
    429: "Too many requests from this address (`rate_limited`); see `Retry-After`.",
    503: "`collection_disabled` (no bot accounts are configured) or `service_unavailable`.",
}


def _job_answer(description: str) -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {"ok": {"const": True}, "job": _JOB_REF, "request_id": {"type": "string"}},
    }}}}}


def _errors(*statuses: int) -> dict:
    return error_responses({status: _ERRORS[status] for status in statuses})


OPENAPI_SCHEMAS: dict = {
    "CollectJobRequest": {
        "type": "object",
        "required": ["direction"],
        "additionalProperties": False,
        "properties": {
            "direction": {"type": "string", "enum": ["forward", "backward", "range"],
                          "description": "`forward` follows new battles, `backward` walks history down to "
                                         "`end` (default: the configured floor), `range` fetches start to end."},
            "start": {"type": ["integer", "null"], "minimum": 1,
                      "description": "First battle id. Default for forward: the highest fetched or loaded id "
                                     "+ 1; for backward: the lowest - 1. Required for range."},
            "end": {"type": ["integer", "null"], "minimum": 1,
                    "description": "Last id (forward, range) or lowest id (backward); not with count."},
            "count": {"type": ["integer", "null"], "minimum": 1,
                      "description": "Number of ids from start, instead of end."},
        },
    },
    "CollectJob": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "server": {"type": "string"},
            "direction": {"type": "string", "enum": ["forward", "backward", "range"]},
            "trigger": {"type": "string", "enum": ["rpc", "schedule"]},
            "status": {"type": "string", "enum": ["running", "finished", "aborted", "failed"]},
            "abort_requested": {"type": "boolean"},
            "start": {"type": "integer"},
            "end": {"type": ["integer", "null"]},
            "count": {"type": ["integer", "null"]},
            "cursor": {"type": "integer", "description": "The next battle id to process."},
            "counts": {
                "type": "object",
                "description": "Battle ids by outcome; skipped ids had one from before the job.",
                "properties": {name: {"type": "integer"}
                               for name in ("fetched", "not_found", "failed", "mismatch", "skipped")},
            },
            "processed": {"type": "integer"},
            "total": {"type": ["integer", "null"], "description": "Null for a forward job without an end."},
            "remaining": {"type": ["integer", "null"]},
            "rate": {"type": ["number", "null"],
                     "description": "Battle ids requested a second over the last minute (progress only)."},
            "eta_seconds": {"type": ["integer", "null"], "description": "Progress only."},
            "waiting_until": {"type": ["string", "null"], "format": "date-time",
                              "description": "A forward job at the newest battle looks again at this time."},
            "error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "last_errors": {
                "type": "array",
                "description": "Progress only: the latest failed and mismatched battle ids.",
                "items": {"type": "object", "properties": {
                    "battle_id": {"type": "integer"},
                    "status": {"type": "string", "enum": ["failed", "mismatch"]},
                    "reason": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                    "found_id": {"type": ["integer", "null"]},
                    "attempts": {"type": "integer"},
                    "detail": {"type": ["string", "null"]},
                    "bot": {"type": ["string", "null"]},
                    "updated_at": {"type": "string", "format": "date-time"},
                }},
            },
        },
    },
}

#: Paths this module adds to the OpenAPI document.
OPENAPI_PATHS: dict = {
    "/api/admin/collect": {
        "post": {
            "summary": "Start a battle-log collection job.",
            "security": _BEARER,
            "parameters": [LANGUAGE],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CollectJobRequest"}}}},
            "responses": {**_job_answer("The job was created; it runs in the background."),
                          **_errors(400, 401, 409, 413, 429, 503)},
        },
        "get": {
            "summary": "List collection jobs, newest first.",
            "security": _BEARER,
            "parameters": [
                LANGUAGE,
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": DEFAULT_LIST_LIMIT}},
                {"name": "status", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["running", "finished", "aborted", "failed"]}},
            ],
            "responses": {
                "200": {"description": "The jobs.", "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"ok": {"const": True}, "jobs": {"type": "array", "items": _JOB_REF},
                                   "request_id": {"type": "string"}},
                }}}},
                **_errors(400, 401, 429, 503),
            },
        },
    },
    "/api/admin/collect/{job_id}": {
        "get": {
            "summary": "A collection job's progress: counts, cursor, rate, ETA and latest errors.",
            "security": _BEARER,
            "parameters": [_JOB_ID, LANGUAGE],
            "responses": {**_job_answer("The job."), **_errors(400, 401, 404, 429, 503)},
        },
    },
    "/api/admin/collect/{job_id}/abort": {
        "post": {
            "summary": "Ask a running job to stop between battle ids; an ended job is returned unchanged.",
            "security": _BEARER,
            "parameters": [_JOB_ID, LANGUAGE],
            "responses": {**_job_answer("The job, with `abort_requested` set until it stops."),
                          **_errors(400, 401, 404, 429, 503)},
        },
    },
}
