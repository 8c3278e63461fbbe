"""Parameters of the analytics queries, checked and converted.

A query's parameters arrive as strings from a URL's query string or as JSON
values over RPC; both are accepted where they mean the same thing (``"20"``
and ``20`` for a number), and nothing else is: ``true`` or ``2.5`` is not a
number, and an unknown or repeated parameter is an error. Every bad
parameter is reported at once, each with a message key of
:mod:`services.common.messages` and, where the message names bounds or
choices, its own values.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.errors import ValidationFailed


#: Rows per page unless a request asks for another number, and the most it may ask for.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_PAGE = 10_000
MAX_TEXT = 100
SMALLINT = 32767

# Every integer parameter has bounds, so a long number gets the range message;
# the cap keeps int() far below Python's 4,300-digit conversion limit.
_INTEGER_RE = re.compile(r"^-?[0-9]{1,100}$")
_NUMBER_RE = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,12})?$")
_TIMEZONE_RE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


@dataclass(frozen=True)
class Param:
    """One accepted parameter: its kind, bounds, choices and default."""

    kind: str  # integer, number, text, datetime, choice, boolean, timezone
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    max_length: int = MAX_TEXT


@dataclass
class _Errors:
    fields: dict = field(default_factory=dict)

    def add(self, name: str, key: str, **params) -> None:
        # The first problem found with a parameter is the one reported.
        self.fields.setdefault(name, [key, {placeholder: str(value) for placeholder, value in params.items()}])


def _integer(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        return float(value.strip())
    return None


def parse_datetime(value) -> datetime | None:
    """Parse ISO 8601 date or date-time text into an aware UTC datetime.

    A date alone means its midnight in UTC, and a time without an offset is
    UTC. Returns None for anything else.
    """
    if not isinstance(value, str) or not 8 <= len(value.strip()) <= 40:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        if "T" not in text and " " not in text and len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _timezone(value):
    if not isinstance(value, str) or not _TIMEZONE_RE.fullmatch(value) or ".." in value:
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _convert(name: str, spec: Param, value, errors: _Errors):
    if spec.kind == "integer":
        number = _integer(value)
        if number is None:
            errors.add(name, "param.integer")
        elif (spec.minimum is not None and number < spec.minimum) or (
                spec.maximum is not None and number > spec.maximum):
            errors.add(name, "param.range", min=spec.minimum, max=spec.maximum)
        else:
            return number
    elif spec.kind == "number":
        number = _number(value)
        if number is None:
            errors.add(name, "param.number")
        elif (spec.minimum is not None and number < spec.minimum) or (
                spec.maximum is not None and number > spec.maximum):
            errors.add(name, "param.range", min=spec.minimum, max=spec.maximum)
        else:
            return number
    elif spec.kind == "text":
        if not isinstance(value, str) or not value.strip():
            errors.add(name, "param.text", max=spec.max_length)
        elif len(value) > spec.max_length or any(ord(char) < 32 for char in value):
            errors.add(name, "param.text", max=spec.max_length)
        else:
            return value
    elif spec.kind == "datetime":
        moment = parse_datetime(value)
        if moment is None:
            errors.add(name, "param.datetime")
        else:
            return moment
    elif spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            errors.add(name, "param.choice", choices=", ".join(spec.choices))
        else:
            return value
    elif spec.kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false", "1", "0"):
            return value in ("true", "1")
        errors.add(name, "param.boolean")
    elif spec.kind == "timezone":
        zone = _timezone(value)
        if zone is None:
            errors.add(name, "param.timezone")
        else:
            return value
    else:  # pragma: no cover - a programming error in a spec
        raise ValueError(f"unknown parameter kind {spec.kind!r}")
    return None


def parse(params, specs: dict[str, Param]) -> dict:
    """Check ``params`` against ``specs`` and return every parameter, defaults filled in.

    Raises :class:`ValidationFailed` naming each unknown, repeated or bad
    parameter. ``since`` must be earlier than ``until`` when both are given.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationFailed("parameters must be a mapping", fields={"params": "param.mapping"})
    errors = _Errors()
    result = {}
    for name, value in params.items():
        if not isinstance(name, str) or name not in specs:
            errors.add(str(name), "param.unknown")
            continue
        if isinstance(value, list):
            if len(value) != 1:
                errors.add(name, "param.repeated")
                continue
            value = value[0]
        if value is None:
            continue
        converted = _convert(name, specs[name], value, errors)
        if converted is not None:
            result[name] = converted
    for name, spec in specs.items():
        result.setdefault(name, spec.default)
    since, until = result.get("since"), result.get("until")
    if since is not None and until is not None and since >= until:
        errors.add("until", "param.order")
    if errors.fields:
        raise ValidationFailed("invalid parameters: " + ", ".join(sorted(errors.fields)), fields=errors.fields)
    return result


# Parameter sets shared by several queries.

PAGE = {
    "page": Param("integer", default=1, minimum=1, maximum=MAX_PAGE),
    "limit": Param("integer", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
}
PERIOD = {
    "since": Param("datetime"),
    "until": Param("datetime"),
}
SERVER = {"server": Param("text", max_length=64)}
LOCATION = {
    "x": Param("integer", minimum=-SMALLINT, maximum=SMALLINT),
    "y": Param("integer", minimum=-SMALLINT, maximum=SMALLINT),
}


def identifier(value, name: str, max_length: int = MAX_TEXT) -> str:
    """Check a path value (a login, a clan name): non-empty text without control characters."""
    errors = _Errors()
    converted = _convert(name, Param("text", max_length=max_length), value, errors)
    if errors.fields:
        raise ValidationFailed(f"invalid {name}", fields=errors.fields)
    return converted


def battle_id(value) -> int:
    """Check a battle id from a path: a positive integer."""
    errors = _Errors()
    converted = _convert("battle_id", Param("integer", minimum=1, maximum=2**63 - 1), value, errors)
    if errors.fields:
        raise ValidationFailed("invalid battle_id", fields=errors.fields)
    return converted
