"""Validation of registration and recovery requests.

Types are strict: a number must be a JSON integer (``true``, ``"1"`` and
``1.0`` are rejected), and strings must be strings. Every failing field is
reported at once, as a message key of :mod:`services.common.messages`.
"""

import re
from dataclasses import dataclass

from services.common.errors import BadRequest, ValidationFailed


LOGIN_MIN, LOGIN_MAX = 3, 16
PASSWORD_MIN, PASSWORD_MAX = 6, 20
USERNAME_MAX = 64
TELEGRAM_ID_MAX = 2**63 - 1
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")

# A login is written in one script: Latin or Cyrillic letters, never both,
# with digits, spaces, "_" and "-", and at least one letter.
_LATIN_LOGIN_RE = re.compile(r"[A-Za-z0-9 _-]*[A-Za-z][A-Za-z0-9 _-]*")
_CYRILLIC_LOGIN_RE = re.compile(r"[А-Яа-яЁё0-9 _-]*[А-Яа-яЁё][А-Яа-яЁё0-9 _-]*")
# Printable ASCII, space included: what the game client can type.
_PASSWORD_RE = re.compile(r"[\x20-\x7e]*")

# Fields the website sends that registration accepts and does not use. The
# gateway reads Request-Id, the request id of clients that send no header.
IGNORED_WEBSITE_FIELDS = ("user_created_at", "user_registration_ip", "user_Country", "user_registration_type")
_IGNORED_FIELDS = frozenset({*IGNORED_WEBSITE_FIELDS, "Request-Id"})
_TELEGRAM_AUTH_FIELD = "telegram_auth"


@dataclass(frozen=True)
class RegisterRequest:
    """A validated registration request; the password stays in memory only."""

    login: str
    password: str
    gender: int
    telegram_id: int | None
    username: str | None
    telegram_auth: dict | None

    def __repr__(self) -> str:
        return (
            f"RegisterRequest(login={self.login!r}, gender={self.gender}, telegram_id={self.telegram_id}, "
            f"username={self.username!r}, telegram_auth={'yes' if self.telegram_auth else 'no'})"
        )


@dataclass(frozen=True)
class RecoverRequest:
    """A validated password recovery request."""

    password: str
    telegram_id: int | None
    telegram_auth: dict | None

    def __repr__(self) -> str:
        return f"RecoverRequest(telegram_id={self.telegram_id}, telegram_auth={'yes' if self.telegram_auth else 'no'})"


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_login(value, fields: dict) -> None:
    if not isinstance(value, str):
        fields["login"] = "field.string"
    elif not LOGIN_MIN <= len(value) <= LOGIN_MAX:
        fields["login"] = "login.length"
    elif not (_LATIN_LOGIN_RE.fullmatch(value) or _CYRILLIC_LOGIN_RE.fullmatch(value)):
        fields["login"] = "login.charset"
    elif value != value.strip(" ") or "  " in value:
        # "Bob", " Bob" and "Bob  Smith" would look alike in the game.
        fields["login"] = "login.spaces"


def _check_password(value, fields: dict, name: str = "password") -> None:
    if not isinstance(value, str):
        fields[name] = "field.string"
    elif not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        fields[name] = "password.length"
    elif not _PASSWORD_RE.fullmatch(value):
        fields[name] = "password.charset"


def _check_telegram(payload: dict, fields: dict) -> tuple[int | None, dict | None]:
    """Check telegram_id and telegram_auth; at least one of them is required."""
    telegram_id = payload.get("telegram_id")
    auth = payload.get(_TELEGRAM_AUTH_FIELD)
    if telegram_id is None and auth is None:
        fields["telegram_id"] = "field.required"
        return None, None
    if telegram_id is not None and not (_is_integer(telegram_id) and 0 < telegram_id <= TELEGRAM_ID_MAX):
        fields["telegram_id"] = "telegram_id.positive"
        telegram_id = None
    if auth is not None and not (isinstance(auth, dict) and isinstance(auth.get("hash"), str)
                                 and _is_integer(auth.get("id")) and _is_integer(auth.get("auth_date"))):
        fields[_TELEGRAM_AUTH_FIELD] = "telegram_auth.invalid"
        auth = None
    elif auth is not None and not 0 < auth["id"] <= TELEGRAM_ID_MAX:
        # The id becomes the Telegram id, so it gets the same check.
        fields[_TELEGRAM_AUTH_FIELD] = "telegram_id.positive"
        auth = None
    return telegram_id, auth


def _check_unknown(payload: dict, allowed: frozenset, fields: dict) -> None:
    for name in payload:
        if name not in allowed and name not in _IGNORED_FIELDS:
            fields[name] = "field.unknown"


def _require_object(payload) -> dict:
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object",
                         params={"reason": "reason.json_object"})
    return payload


_REGISTER_FIELDS = frozenset({"login", "password", "gender", "telegram_id", "username", _TELEGRAM_AUTH_FIELD})
_RECOVER_FIELDS = frozenset({"password", "telegram_id", _TELEGRAM_AUTH_FIELD})


def parse_register(payload) -> RegisterRequest:
    """Validate a registration request; raise :class:`ValidationFailed` listing every bad field."""
    payload = _require_object(payload)
    fields: dict[str, str] = {}
    _check_unknown(payload, _REGISTER_FIELDS, fields)
    for name in ("login", "password", "gender"):
        if name not in payload:
            fields[name] = "field.required"
    if "login" in payload:
        _check_login(payload["login"], fields)
    if "password" in payload:
        _check_password(payload["password"], fields)
    gender = payload.get("gender")
    if "gender" in payload and not (_is_integer(gender) and gender in (0, 1)):
        fields["gender"] = "gender.choice"
    username = payload.get("username")
    if username is not None and not isinstance(username, str):
        fields["username"] = "field.string"
    elif username is not None and len(username) > USERNAME_MAX:
        fields["username"] = "username.length"
    telegram_id, auth = _check_telegram(payload, fields)
    if fields:
        raise ValidationFailed("invalid fields: " + ", ".join(sorted(fields)), fields=fields)
    return RegisterRequest(
        login=payload["login"],
        password=payload["password"],
        gender=gender,
        telegram_id=telegram_id,
        username=username or None,
        telegram_auth=auth,
    )


def parse_recover(payload) -> RecoverRequest:
    """Validate a password recovery request; raise :class:`ValidationFailed` listing every bad field."""
    payload = _require_object(payload)
    fields: dict[str, str] = {}
    _check_unknown(payload, _RECOVER_FIELDS, fields)
    if "password" not in payload:
        fields["password"] = "field.required"
    else:
        _check_password(payload["password"], fields)
    telegram_id, auth = _check_telegram(payload, fields)
    if fields:
        raise ValidationFailed("invalid fields: " + ", ".join(sorted(fields)), fields=fields)
    return RecoverRequest(password=payload["password"], telegram_id=telegram_id, telegram_auth=auth)


def check_request_id(request_id) -> str:
    """Return a valid request id or raise :class:`ValidationFailed`."""
    if not isinstance(request_id, str) or not REQUEST_ID_RE.fullmatch(request_id):
        raise ValidationFailed("invalid request id", fields={"request_id": "request_id.format"})
    return request_id
