"""API keys and rate limits for the gateway's protected routes.

Keys are configured as ``name:sha256hex`` pairs: the gateway stores only
hashes, hashes the presented ``X-API-Key`` and compares it with every
configured hash in constant time. Requests are counted per client address
before the key is checked, so guessing keys is rate-limited too, and per
key after it. Counters live in Redis (the ``limits`` library's moving
window), so every gateway process shares them.

The operator routes take ``Authorization: Bearer <token>`` instead, checked
the same way against the ``admin_tokens`` hashes.
"""

import hashlib
import hmac
import ipaddress
import math
import re
import time
from dataclasses import dataclass, field
from logging import getLogger

import redis as redis_library
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from nameko.extensions import DependencyProvider

from services.common.config import describe_setting
from services.common.config import section as config_section
from services.common.errors import InvalidAdminToken, InvalidApiKey, RateLimited
from services.gateway.web import CONFIG_SECTION


_log = getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
AUTHORIZATION_HEADER = "Authorization"
_HASH_RE = re.compile(r"[0-9a-f]{64}")
DEFAULT_IP_LIMIT = "60/minute"
DEFAULT_KEY_LIMIT = "600/minute"


def hash_api_key(key: str) -> str:
    """Return the SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(value, setting: str = "api_keys") -> dict[str, str]:
    """Parse ``name:hash`` pairs (a comma-separated string or a mapping).

    Raises ValueError on a malformed entry, so a typo stops the service at
    start instead of locking every client out. ``setting`` names the config
    key in the message. The message gives the entry's position only: a
    malformed entry may be a raw key pasted in place of its hash.
    """
    if not value:
        return {}
    described = describe_setting(CONFIG_SECTION, setting)
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = []
        for position, entry in enumerate(str(value).split(","), start=1):
            name, separator, digest = entry.strip().partition(":")
            if not separator:
                raise ValueError(f"{described}: entry {position} is not name:sha256hex")
            pairs.append((name, digest))
    keys = {}
    for position, (name, digest) in enumerate(pairs, start=1):
        digest = str(digest).strip().lower()
        if not name or not _HASH_RE.fullmatch(digest):
            raise ValueError(f"{described}: entry {position} needs a name and a 64-digit hex SHA-256 hash")
        keys[str(name).strip()] = digest
    return keys


@dataclass(frozen=True)
class GuardSettings:
    """Keys, limits and trusted proxies, from the GATEWAY config section."""

    api_keys: dict
    ip_limit: str
    key_limit: str
    trusted_proxies: tuple
    redis_url: str
    #: Bearer tokens of the operator routes, name -> SHA-256 hex.
    admin_tokens: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict) -> "GuardSettings":
        section = config_section(config, CONFIG_SECTION)
        redis = config_section(config, "REDIS")
        proxies = section.get("trusted_proxies") or ()
        if isinstance(proxies, str):
            proxies = [proxy.strip() for proxy in proxies.split(",") if proxy.strip()]
        settings = cls(
            api_keys=parse_api_keys(section.get("api_keys")),
            ip_limit=str(section.get("ip_limit", DEFAULT_IP_LIMIT)),
            key_limit=str(section.get("key_limit", DEFAULT_KEY_LIMIT)),
            trusted_proxies=tuple(ipaddress.ip_network(proxy) for proxy in proxies),
            redis_url=str(redis.get("url", "redis://127.0.0.1:6379/0")),
            admin_tokens=parse_api_keys(section.get("admin_tokens"), "admin_tokens"),
        )
        for key, limit in (("ip_limit", settings.ip_limit), ("key_limit", settings.key_limit)):
            try:
                parse_limit(limit)
            except ValueError:
                raise ValueError(f"{describe_setting(CONFIG_SECTION, key)} is not a rate limit"
                                 f" such as 60/minute: {limit!r}") from None
        return settings


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted: tuple) -> str:
    """Return the client's address, following X-Forwarded-For only through trusted proxies."""
    address = remote_addr or "unknown"
    if not trusted or not forwarded_for:
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in [address, *reversed(hops)]:
        try:
            if not any(ipaddress.ip_address(hop) in network for network in trusted):
                return hop
        except ValueError:
            return hop
    return address


class _Checks:
    def __init__(self, guard: "Guard"):
        self.guard = guard

    def admit(self, request, route: str, ip_limit: str | None = None, authenticate: bool = True) -> str | None:
        """Count the request and check its key; return the key's name.

        Raises :class:`RateLimited` (with ``retry_after``) or
        :class:`InvalidApiKey`.
        """
        guard = self.guard
        settings = guard.settings
        address = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                                 settings.trusted_proxies)
        guard.hit(ip_limit or settings.ip_limit, "ip", route, address)
        if not authenticate:
            return None
        name = guard.key_name(request.headers.get(API_KEY_HEADER))
        if name is None:
            # nameko logs the raised error, and QuietClientErrors keeps that to one INFO line.
            raise InvalidApiKey(f"the API key is missing or unknown (route {route}, client {address})")
        guard.hit(settings.key_limit, "key", name)
        return name

    def admit_admin(self, request, route: str) -> str:
        """Count the request per client address, then check its bearer token; return the token's name.

        Raises :class:`RateLimited` (with ``retry_after``) or
        :class:`InvalidAdminToken`.
        """
        guard = self.guard
        settings = guard.settings
        address = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                                 settings.trusted_proxies)
        guard.hit(settings.ip_limit, "ip", route, address)
        name = guard.admin_token_name(request.headers.get(AUTHORIZATION_HEADER))
        if name is None:
            _log.info("rejected a request to %s from %s: missing or unknown admin token", route, address)
            raise InvalidAdminToken("the admin bearer token is missing or unknown")
        _log.info("admin token %s: %s from %s", name, route, address)
        return name


class Guard(DependencyProvider):
    """Checks API keys and counts requests against the configured limits."""

    def setup(self):
        self.settings = GuardSettings.from_config(self.container.config)
        if not self.settings.api_keys:
            _log.warning("no API keys are configured: every protected route returns 401")
        if not self.settings.admin_tokens:
            _log.info("no admin tokens are configured: the admin routes return 401")

    def start(self):
        self.storage = RedisStorage(self.settings.redis_url, key_prefix="tzr:limits", socket_timeout=2)
        self.limiter = MovingWindowRateLimiter(self.storage)

    def key_name(self, presented: str | None) -> str | None:
        # Compare with every configured hash, so the time taken does not
        # depend on which key (if any) matched.
        if not presented:
            return None
        digest = hash_api_key(presented)
        match = None
        for name, expected in self.settings.api_keys.items():
            if hmac.compare_digest(digest, expected):
                match = name
        return match

    def admin_token_name(self, authorization: str | None) -> str | None:
        """Return the name of the admin token in an ``Authorization: Bearer`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        # As in key_name: every configured hash is compared, matched or not.
        digest = hash_api_key(token)
        match = None
        for name, expected in self.settings.admin_tokens.items():
            if hmac.compare_digest(digest, expected):
                match = name
        return match

    def hit(self, limit: str, *identifiers: str) -> None:
        item = parse_limit(limit)
        try:
            allowed = self.limiter.hit(item, *identifiers)
            if allowed:
                return
            stats = self.limiter.get_window_stats(item, *identifiers)
        except redis_library.RedisError as error:
            # Limits protect the backends; losing them for a while is
            # better than refusing every request while Redis is down.
            _log.error("rate limit not checked, Redis failed: %s", error)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(f"limit {limit} reached for {identifiers[0]}", params={"retry_after": retry_after})

    def get_dependency(self, worker_ctx):
        return _Checks(self)
