"""Telegram checks for registration: login data and group membership.

The Telegram id that a request claims is trusted only when it comes with
Telegram Login Widget data whose hash verifies with the bot token (see
https://core.telegram.org/widgets/login#checking-authorization). Group
membership is asked from the Bot API's ``getChatMember`` and cached in
Redis; when Telegram cannot respond, the check fails with a retryable error
and never lets the request through.
"""

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from logging import getLogger

import requests

from services.common.errors import TelegramAuthFailed, TelegramUnavailable


_log = getLogger(__name__)
# urllib3 logs request lines at debug level, and the Bot API carries the bot
# token in the URL path.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

MEMBER_STATUSES = frozenset({"member", "administrator", "creator"})
# Replies of getChatMember that mean "not in the group" rather than an error.
_NOT_MEMBER_DESCRIPTIONS = ("user not found", "participant_id_invalid", "member not found")
# Widget data dated this far in the future is rejected as forged (seconds).
_CLOCK_SKEW = 300


def verify_login_widget(data: dict, bot_token: str, max_age: int, now: float | None = None) -> int:
    """Return the Telegram id of verified Login Widget data.

    The check string is every received field except ``hash``, sorted by
    name, as ``name=value`` lines; its HMAC-SHA256, keyed with the SHA-256
    of the bot token, must equal ``hash``. Data older than ``max_age``
    seconds is rejected too, so a captured login cannot be replayed for long.
    Raises :class:`TelegramAuthFailed`.
    """
    received = data.get("hash")
    if not isinstance(received, str):
        raise TelegramAuthFailed("telegram_auth has no hash")
    lines = [f"{name}={data[name]}" for name in sorted(data) if name != "hash" and data[name] is not None]
    secret = hashlib.sha256(bot_token.encode()).digest()
    expected = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received.lower()):
        raise TelegramAuthFailed("the telegram_auth hash does not verify")
    now = time.time() if now is None else now
    auth_date = data["auth_date"]
    if auth_date > now + _CLOCK_SKEW or now - auth_date > max_age:
        raise TelegramAuthFailed(f"telegram_auth is dated {auth_date}, outside the accepted {max_age} s")
    return data["id"]


@dataclass(frozen=True)
class GroupCheckSettings:
    """Telegram Bot API settings for the group membership check."""

    api_base: str
    bot_token: str
    group_id: str
    timeout: float = 5.0
    member_ttl: int = 600
    non_member_ttl: int = 60


class GroupMembership:
    """Checks whether a Telegram user belongs to the required group."""

    def __init__(self, settings: GroupCheckSettings, redis, session: requests.Session | None = None):
        self.settings = settings
        self.redis = redis
        self.session = session or requests.Session()

    def _cache_key(self, telegram_id: int) -> str:
        return f"tzr:tg:member:{self.settings.group_id}:{telegram_id}"

    def is_member(self, telegram_id: int) -> bool:
        """Return True for a member, False for a non-member.

        Raises :class:`TelegramUnavailable` when Telegram cannot respond (network
        error, timeout, throttling, a bad bot token or any unexpected reply).
        """
        key = self._cache_key(telegram_id)
        cached = self.redis.get(key)
        if cached is not None:
            return cached in (b"1", "1")

        member = self._ask(telegram_id)
        ttl = self.settings.member_ttl if member else self.settings.non_member_ttl
        self.redis.set(key, "1" if member else "0", ex=ttl)
        return member

    def _ask(self, telegram_id: int) -> bool:
        settings = self.settings
        url = f"{settings.api_base.rstrip('/')}/bot{settings.bot_token}/getChatMember"
        try:
            response = self.session.get(
                url, params={"chat_id": settings.group_id, "user_id": telegram_id}, timeout=settings.timeout,
            )
            body = response.json()
        except requests.RequestException as error:
            _log.warning("telegram getChatMember failed for user %s: %s", telegram_id, type(error).__name__)
            raise TelegramUnavailable(f"telegram is unreachable: {type(error).__name__}") from None
        except ValueError:
            _log.warning("telegram getChatMember returned no JSON (HTTP %s)", response.status_code)
            raise TelegramUnavailable(f"telegram returned HTTP {response.status_code} without JSON") from None

        if response.status_code == 200 and body.get("ok"):
            result = body.get("result") or {}
            status = result.get("status")
            if status in MEMBER_STATUSES:
                return True
            if status == "restricted":
                return bool(result.get("is_member"))
            return False
        description = str(body.get("description", "")).lower()
        if response.status_code == 400 and any(text in description for text in _NOT_MEMBER_DESCRIPTIONS):
            return False
        _log.warning(
            "telegram getChatMember responded with HTTP %s for user %s: %s",
            response.status_code, telegram_id, body.get("description"),
        )
        raise TelegramUnavailable(f"telegram responded with HTTP {response.status_code}: {body.get('description')}")
