"""Settings of the site agent, from environment variables.

Every address defaults to this host. Secrets have no defaults: the HMAC
secret and the AES key come from ``TZR_SITE_HMAC_SECRET`` and
``TZR_SITE_AES_KEY`` or from the files that ``*_FILE`` names, and the JWT
from the file that ``TZR_AGENT_JWT_FILE`` names (re-read when it changes).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from site_agent import crypto


DEFAULT_SITE_URL = "ws://127.0.0.1:8765/ws/pull"
HMAC_SECRET = "TZR_SITE_HMAC_SECRET"
AES_KEY_SECRET = "TZR_SITE_AES_KEY"
JWT_FILE = "TZR_AGENT_JWT_FILE"

# (variable, default, kind, minimum) of each number.
_NUMBERS = {
    "job_ttl": ("TZR_JOB_TTL", 45, int, 1),
    "concurrency": ("TZR_AGENT_CONCURRENCY", 8, int, 1),
    "max_pending": ("TZR_AGENT_MAX_PENDING", 32, int, 1),
    "max_frame_bytes": ("TZR_AGENT_MAX_FRAME", 64 * 1024, int, 1024),
    "ping_interval": ("TZR_AGENT_PING_INTERVAL", 20.0, float, 0.1),
    "ping_timeout": ("TZR_AGENT_PING_TIMEOUT", 20.0, float, 0.1),
    "open_timeout": ("TZR_AGENT_OPEN_TIMEOUT", 10.0, float, 0.1),
    "backoff_min": ("TZR_AGENT_BACKOFF_MIN", 1.0, float, 0.01),
    "backoff_max": ("TZR_AGENT_BACKOFF_MAX", 30.0, float, 0.01),
    "shutdown_timeout": ("TZR_AGENT_SHUTDOWN_TIMEOUT", 30.0, float, 0.0),
    "token_poll": ("TZR_AGENT_TOKEN_POLL", 2.0, float, 0.05),
    "result_keep": ("TZR_AGENT_RESULT_KEEP", 86400, int, 1),
    "register_timeout": ("TZR_AGENT_REGISTER_TIMEOUT", 60.0, float, 0.1),
    "query_timeout": ("TZR_AGENT_QUERY_TIMEOUT", 10.0, float, 0.1),
}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def read_secret(name: str, environ=None) -> str:
    """Return the secret ``name`` from the environment, or from the file that ``name_FILE`` names.

    The same rule as the services' secrets: the variable wins, a file's
    trailing line breaks are stripped, and an empty value counts as unset.
    The value is never logged or quoted.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    if value:
        return value
    path = environ.get(name + "_FILE")
    if not path:
        raise SettingsError(f"secret {name} is not set: set {name}, or {name}_FILE to the path of a file with it")
    try:
        with open(path, encoding="utf-8") as stream:
            value = stream.read().rstrip("\r\n")
    except OSError as error:
        raise SettingsError(f"cannot read the secret file {path} named by {name}_FILE: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"the secret file {path} named by {name}_FILE is not UTF-8") from None
    if not value:
        raise SettingsError(f"the secret file {path} named by {name}_FILE is empty")
    return value


@dataclass(frozen=True)
class Settings:
    """The agent's settings. ``hmac_key`` and ``aes_key`` are secrets, so ``repr`` leaves them out."""

    site_url: str
    jwt_file: Path
    amqp_uri: str
    redis_url: str
    hmac_key: bytes = field(repr=False)
    aes_key: bytes = field(repr=False)
    job_ttl: int = 45
    concurrency: int = 8
    max_pending: int = 32
    max_frame_bytes: int = 64 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    open_timeout: float = 10.0
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    shutdown_timeout: float = 30.0
    token_poll: float = 2.0
    result_keep: int = 86400
    register_timeout: float = 60.0
    query_timeout: float = 10.0

    @property
    def running_keep(self) -> int:
        """Seconds a job stays marked as running, after which a crashed agent's job may run again."""
        return int(max(self.register_timeout, self.query_timeout) * 2) + self.job_ttl


def _number(environ, name: str):
    variable, default, kind, minimum = _NUMBERS[name]
    raw = environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SettingsError(f"{variable} must be {what}, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{variable} must be at least {minimum}, got {raw!r}")
    return value


def from_environment(environ=None) -> Settings:
    """Read the settings; raise :class:`SettingsError` naming the first bad variable."""
    environ = os.environ if environ is None else environ
    site_url = environ.get("TZR_SITE_URL") or DEFAULT_SITE_URL
    if not site_url.startswith(("ws://", "wss://")):
        raise SettingsError(f"TZR_SITE_URL must start with ws:// or wss://, got {site_url!r}")
    jwt_file = environ.get(JWT_FILE)
    if not jwt_file:
        raise SettingsError(f"{JWT_FILE} is not set: set it to the path of the file that contains the site's JWT")
    try:
        hmac_key = crypto.hmac_key(read_secret(HMAC_SECRET, environ))
        aes_key = crypto.aes_key(read_secret(AES_KEY_SECRET, environ))
    except ValueError as error:
        raise SettingsError(str(error)) from None
    numbers = {name: _number(environ, name) for name in _NUMBERS}
    if numbers["backoff_max"] < numbers["backoff_min"]:
        raise SettingsError("TZR_AGENT_BACKOFF_MAX must not be below TZR_AGENT_BACKOFF_MIN")
    return Settings(
        site_url=site_url,
        jwt_file=Path(jwt_file),
        amqp_uri=environ.get("AMQP_URI") or "pyamqp://guest:guest@127.0.0.1:5672/",
        redis_url=environ.get("TZR_REDIS_URL") or "redis://127.0.0.1:6379/0",
        hmac_key=hmac_key,
        aes_key=aes_key,
        **numbers,
    )
