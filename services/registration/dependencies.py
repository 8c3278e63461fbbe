"""Settings and outside connections of the registration service."""

import re
from dataclasses import dataclass
from logging import getLogger

from nameko.extensions import DependencyProvider

from services.common.config import describe_setting, read_number
from services.common.config import section as config_section
from services.common.secrets import read_secret
from services.registration.telegram import GroupCheckSettings


_log = getLogger(__name__)

CONFIG_SECTION = "REGISTRATION"
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class RegistrationSettings:
    """The REGISTRATION config section, checked at container setup.

    The Telegram bot token is a secret: it is read from the environment
    variable ``TELEGRAM_BOT_TOKEN`` or the file that ``TELEGRAM_BOT_TOKEN_FILE``
    names, never from the config file.
    """

    game_host: str
    game_port: int
    game_encoding: str
    connect_timeout: float
    reply_timeout: float
    connect_attempts: int
    account_email: str
    account_limit: int
    users_table: str
    pending_timeout: float
    reconcile_delay: float
    request_wait: float
    check_group: bool
    require_telegram_auth: bool
    telegram_auth_max_age: int
    telegram: GroupCheckSettings | None
    bot_token: str | None

    @classmethod
    def from_config(cls, config: dict) -> "RegistrationSettings":
        section = config_section(config, CONFIG_SECTION)
        check_group = _flag(section.get("check_group", False))
        require_auth = _flag(section.get("require_telegram_auth", False))
        bot_token = read_secret("TELEGRAM_BOT_TOKEN", required=check_group or require_auth)
        group_id = str(section.get("telegram_group_id") or "")
        if check_group and not group_id:
            raise ValueError(f"config {CONFIG_SECTION}.check_group is on but telegram_group_id is empty")

        def number(key, default, kind=float):
            return read_number(section, CONFIG_SECTION, key, default, kind)

        users_table = str(section.get("users_table", "users"))
        if not _IDENTIFIER_RE.fullmatch(users_table):
            raise ValueError(f"config {CONFIG_SECTION}.users_table {users_table!r} is not a table name")
        settings = cls(
            game_host=str(section.get("game_host", "127.0.0.1")),
            game_port=number("game_port", 5190, int),
            game_encoding=str(section.get("game_encoding", "utf-8")),
            connect_timeout=number("connect_timeout", 5),
            reply_timeout=number("reply_timeout", 15),
            connect_attempts=number("connect_attempts", 3, int),
            account_email=str(section.get("account_email", "noreply@localhost")),
            account_limit=number("account_limit", 5, int),
            users_table=users_table,
            pending_timeout=number("pending_timeout", 120),
            reconcile_delay=number("reconcile_delay", 1),
            request_wait=number("request_wait", 10),
            check_group=check_group,
            require_telegram_auth=require_auth,
            telegram_auth_max_age=number("telegram_auth_max_age", 86400, int),
            telegram=GroupCheckSettings(
                api_base=str(section.get("telegram_api", "http://127.0.0.1:8081")),
                bot_token=bot_token,
                group_id=group_id,
                timeout=number("telegram_timeout", 5),
                member_ttl=number("member_cache_seconds", 600, int),
                non_member_ttl=number("non_member_cache_seconds", 60, int),
            ) if bot_token else None,
            bot_token=bot_token,
        )
        for key in ("account_limit", "connect_attempts"):
            if getattr(settings, key) < 1:
                raise ValueError(f"{describe_setting(CONFIG_SECTION, key)} must be at least 1")
        return settings

    def __repr__(self) -> str:
        return f"RegistrationSettings(game={self.game_host}:{self.game_port}, limit={self.account_limit})"


class RegistrationSettingsProvider(DependencyProvider):
    """Gives workers the checked :class:`RegistrationSettings`."""

    def setup(self):
        self.settings = RegistrationSettings.from_config(self.container.config)
        if not self.settings.check_group:
            _log.warning("telegram group membership is not checked (REGISTRATION.check_group is off)")
        if not self.settings.require_telegram_auth:
            _log.warning(
                "TZR_REQUIRE_TELEGRAM_AUTH is false (REGISTRATION.require_telegram_auth): requests may name any"
                " telegram_id, so anyone holding an API key can register accounts for any Telegram user and"
                " reset the passwords of their characters"
            )

    def get_dependency(self, worker_ctx):
        return self.settings
