"""Checks of the arguments that start a collection job or look jobs up.

Errors are :class:`~services.ingest.exceptions.InvalidArgument` with
``fields`` mapping each bad argument to a message key of
:mod:`services.common.messages`, so the gateway can name the field in the
user's language.
"""

from dataclasses import dataclass

from services.ingest.collection.settings import MAX_BATTLE_ID
from services.ingest.collection.store import DIRECTIONS, JOB_STATUSES
from services.ingest.exceptions import InvalidArgument


REQUEST_FIELDS = ("direction", "start", "end", "count")
MAX_JOBS_LISTED = 100


@dataclass(frozen=True)
class JobRequest:
    """The checked arguments of a new job; None means the argument was not given."""

    direction: str
    start: int | None
    end: int | None
    count: int | None


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def invalid(fields: dict, floor: int = 1) -> InvalidArgument:
    """Build the error for ``{field: message key}``, with the detail text in English."""
    detail = "; ".join(f"{name}: {key}" for name, key in fields.items())
    return InvalidArgument(f"invalid collection arguments ({detail})", fields,
                           {"floor": floor, "max_id": MAX_BATTLE_ID})


def parse_job_request(params, floor: int) -> JobRequest:
    """Check the types and ranges of ``{"direction", "start", "end", "count"}``.

    How the arguments combine (and the defaults that need the database) is
    checked when the job is created.
    """
    if not isinstance(params, dict):
        raise InvalidArgument(f"the job arguments must be a mapping, got {type(params).__name__}")
    fields: dict[str, str] = {}
    for name in params:
        if name not in REQUEST_FIELDS:
            fields[str(name)] = "field.unknown"

    direction = params.get("direction")
    if direction is None:
        fields["direction"] = "field.required"
    elif not isinstance(direction, str) or direction not in DIRECTIONS:
        fields["direction"] = "collect.direction"

    numbers: dict[str, int | None] = {}
    for name in ("start", "end", "count"):
        value = params.get(name)
        if value is None:
            numbers[name] = None
        elif not _is_integer(value):
            fields[name] = "field.integer"
        elif name == "count" and not 1 <= value <= MAX_BATTLE_ID:
            fields[name] = "collect.count"
        elif name != "count" and not floor <= value <= MAX_BATTLE_ID:
            fields[name] = "collect.battle_id"
        else:
            numbers[name] = value

    if params.get("end") is not None and params.get("count") is not None:
        fields.setdefault("count", "collect.end_and_count")
    if fields:
        raise invalid(fields, floor)
    return JobRequest(direction, numbers["start"], numbers["end"], numbers["count"])


def check_job_id(job_id) -> int:
    if not _is_integer(job_id) or not 1 <= job_id <= MAX_BATTLE_ID:
        raise invalid({"job_id": "collect.job_id"})
    return job_id


def check_list_arguments(limit, status) -> tuple[int, str | None]:
    fields = {}
    if not _is_integer(limit) or not 1 <= limit <= MAX_JOBS_LISTED:
        fields["limit"] = "collect.limit"
    if status is not None and status not in JOB_STATUSES:
        fields["status"] = "collect.status"
    if fields:
        raise invalid(fields)
    return limit, status
