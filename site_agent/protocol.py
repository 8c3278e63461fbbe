"""Jobs from the website and the agent's results: parsing, checks, and the result envelope.

A job is ``{"type": "job", "id", "job_type", "payload", "ts", "nonce",
"sig"}``; a result is ``{"type": "result", "id", "ok", "result", "error",
"ts", "nonce", "sig"}``. The ``error`` of a failed result is ``"<code>:
<message>"``: a stable English code, then a text in Russian for the
website's users (the code alone is enough for the website's logic).
"""

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass

from site_agent import crypto
from site_agent.shared import messages


# Agent errors that services.common.messages does not know, in Russian and English.
AGENT_MESSAGES = {
    "malformed_job": ("Задание составлено неверно: {reason}.", "The job is malformed: {reason}."),
    "invalid_signature": ("Подпись задания неверна.", "The job's signature is invalid."),
    "job_expired": ("Задание устарело: ему {age} с, допустимо не больше {ttl} с.",
                    "The job has expired: it is {age} s old, and at most {ttl} s is accepted."),
    "job_from_future": ("Время задания на {ahead} с впереди часов агента, допустимо не больше {ttl} с.",
                        "The job is dated {ahead} s ahead of the agent's clock, and at most {ttl} s is accepted."),
    "nonce_reused": ("Это задание уже получено: одноразовое значение повторилось.",
                     "This job was received already: its nonce was used before."),
    "job_id_reused": ("Идентификатор задания уже использован для другого задания.",
                      "The job id was already used for a different job."),
    "job_in_progress": ("Задание с этим идентификатором ещё выполняется. Повторите позже.",
                        "A job with this id is still running. Retry later."),
    "unknown_job_type": ("Неизвестный тип задания: {job_type}.", "Unknown job type: {job_type}."),
    "decryption_failed": ("Не удалось расшифровать пароль: проверьте ключ AES.",
                          "The password could not be decrypted: check the AES key."),
    "agent_busy": ("Агент перегружен. Повторите позже.", "The agent is overloaded. Retry later."),
    "agent_stopping": ("Агент останавливается. Повторите позже.", "The agent is stopping. Retry later."),
}

MAX_ID_LENGTH = 128
_SIG_RE = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("id", "job_type", "payload", "ts", "nonce", "sig")


class JobRejected(Exception):
    """A job that gets an error result: ``code``, the message's ``params``, and optional field messages."""

    def __init__(self, code: str, detail: str = "", params: dict | None = None, fields: dict | None = None,
                 store: bool = True):
        super().__init__(detail or code)
        self.code = code
        self.detail = detail or code
        self.params = dict(params or {})
        self.fields = dict(fields or {})
        #: False for errors that must not be remembered as the job's outcome
        #: (a bad signature could otherwise poison a real job's id).
        self.store = store


class FrameDropped(Exception):
    """A frame that gets no reply at all: no job id can be read from it."""


@dataclass(frozen=True)
class Job:
    id: str
    job_type: str
    payload: dict
    ts: int
    nonce: str
    raw: dict

    def fingerprint(self) -> str:
        """Return the SHA-256 of the job type and payload, which tells apart a repeat and another job with that id."""
        return hashlib.sha256(crypto.canonical_json({"job_type": self.job_type, "payload": self.payload})).hexdigest()


def message_text(code: str, params: dict | None = None, language: str = "ru") -> str:
    """Return the user text of an error code, from the agent's messages or the services' messages."""
    if code in AGENT_MESSAGES:
        ru, en = AGENT_MESSAGES[code]
        text = ru if language == "ru" else en
        try:
            return text.format(**(params or {}))
        except (KeyError, IndexError, ValueError):
            return text
    return messages.render(code, language, params)


def error_text(code: str, params: dict | None = None, fields: dict | None = None) -> str:
    """Return a result's ``error``: ``"<code>: <Russian text>"``, with field messages in brackets."""
    text = f"{code}: {message_text(code, params)}"
    if fields:
        details = "; ".join(f"{name}: {_field_text(value, params)}" for name, value in sorted(fields.items()))
        text = f"{text} ({details})"
    return text


def _field_text(value, params: dict | None) -> str:
    # A field maps to a message key, or to [key, params] when its message
    # has placeholders of its own, as the gateway renders them.
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], dict):
        return messages.render(str(value[0]), "ru", {**(params or {}), **value[1]})
    return messages.render(str(value), "ru", params)


def parse_frame(text) -> dict:
    """Parse one frame into a JSON object whose type is ``job``; raise :class:`FrameDropped` otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameDropped("a binary frame that is not UTF-8") from None
    try:
        message = json.loads(text)
    except ValueError as error:
        raise FrameDropped(f"not JSON: {error.msg} at {error.pos}") from None
    if not isinstance(message, dict):
        raise FrameDropped(f"a JSON {type(message).__name__}, not an object")
    if message.get("type") != "job":
        raise FrameDropped(f"type {str(message.get('type'))[:32]!r}, not 'job'")
    job_id = message.get("id")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH:
        raise FrameDropped("a job without a usable id")
    return message


def check_job(message: dict, hmac_key: bytes, ttl: int, now: float | None = None) -> Job:
    """Check a job's shape, then its signature, then its age; raise :class:`JobRejected` on the first failure.

    The signature is checked before the age, so an unsigned frame learns
    nothing about the agent's clock.
    """
    missing = [name for name in _REQUIRED if name not in message]
    if missing:
        raise JobRejected("malformed_job", f"missing {', '.join(missing)}",
                          params={"reason": f"нет полей {', '.join(missing)}"}, store=False)
    problems = []
    if not isinstance(message["job_type"], str):
        problems.append("job_type")
    if not isinstance(message["payload"], dict):
        problems.append("payload")
    if isinstance(message["ts"], bool) or not isinstance(message["ts"], int):
        problems.append("ts")
    if not isinstance(message["nonce"], str) or not message["nonce"] or len(message["nonce"]) > MAX_ID_LENGTH:
        problems.append("nonce")
    if not isinstance(message["sig"], str) or not _SIG_RE.fullmatch(message["sig"]):
        problems.append("sig")
    if problems:
        raise JobRejected("malformed_job", f"bad {', '.join(problems)}",
                          params={"reason": f"неверные поля {', '.join(problems)}"}, store=False)
    try:
        valid = crypto.signature_matches(message, crypto.JOB_SIGNED_FIELDS, hmac_key)
    except ValueError:  # a float that JSON cannot write, such as NaN
        valid = False
    if not valid:
        raise JobRejected("invalid_signature", store=False)

    now = time.time() if now is None else now
    age = now - message["ts"]
    if age > ttl:
        raise JobRejected("job_expired", f"age {age:.0f} s, ttl {ttl} s",
                          params={"age": f"{age:.0f}", "ttl": ttl}, store=False)
    if -age > ttl:
        raise JobRejected("job_from_future", f"{-age:.0f} s ahead, ttl {ttl} s",
                          params={"ahead": f"{-age:.0f}", "ttl": ttl}, store=False)
    return Job(id=message["id"], job_type=message["job_type"], payload=message["payload"], ts=message["ts"],
               nonce=message["nonce"], raw=message)


def result_message(job_id: str, ok: bool, result, error: str | None, hmac_key: bytes,
                   now: float | None = None) -> dict:
    """Build a signed result with a fresh ``ts`` and ``nonce``."""
    message = {
        "type": "result",
        "id": job_id,
        "ok": bool(ok),
        "result": result if ok else None,
        "error": None if ok else error,
        "ts": int(time.time() if now is None else now),
        "nonce": str(uuid.uuid4()),
    }
    message["sig"] = crypto.sign(message, crypto.RESULT_SIGNED_FIELDS, hmac_key)
    return message
