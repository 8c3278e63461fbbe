"""The SHOP config section and the shop bots secret, checked at service start."""

import re
from dataclasses import dataclass, field
from logging import getLogger

from nameko.exceptions import ConfigurationError

from services.common.config import describe_setting, read_number
from services.common.config import section as config_section
from services.common.secrets import read_secret
from services.game.bots import BotAccount, parse_bot_accounts
from services.game.client import BotSettings
from services.game.framing import check_encoding
from services.shop.scrape import ScrapeSettings


_log = getLogger(__name__)

CONFIG_SECTION = "SHOP"
DEFAULT_BOTS_SECRET = "TZR_SHOP_BOTS"
SHOP_CODE_RE = re.compile(r"[a-z0-9_-]{1,32}")


@dataclass(frozen=True)
class Shop:
    code: str
    name: str
    bot: BotAccount | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.bot is not None


@dataclass(frozen=True)
class ShopSettings:
    """Shop tracker settings; times are in seconds."""

    shops: tuple[Shop, ...]
    bots_secret: str
    game_host: str
    game_port: int
    game_encoding: str
    #: Seconds from the start of one scheduled snapshot of a shop to the next.
    interval: float
    #: How often the timer looks for shops that are due.
    tick: float
    connect_timeout: float
    read_timeout: float
    keepalive_interval: float
    reconnect_attempts: int
    page_attempts: int
    page_retry_delay: float
    page_delay: float
    max_pages: int
    #: After a failed snapshot the next one waits this long, doubling per failure up to retry_max_delay.
    retry_initial_delay: float
    retry_max_delay: float
    #: A running snapshot not touched for this long belongs to a process that died; it is marked failed.
    stale_after: float
    #: Snapshots older than this many days are deleted, with their items and changes (0 keeps everything).
    retention_days: int

    def shop(self, code: str) -> Shop | None:
        return next((shop for shop in self.shops if shop.code == code), None)

    def scrape_settings(self) -> ScrapeSettings:
        return ScrapeSettings(max_pages=self.max_pages, page_attempts=self.page_attempts,
                              retry_delay=self.page_retry_delay, page_delay=self.page_delay,
                              encoding=self.game_encoding)

    def bot_settings(self, shop: Shop) -> BotSettings:
        """Return the session settings of a shop's bot: one retry of a page on a new connection, then backoff."""
        return BotSettings(
            host=self.game_host,
            port=self.game_port,
            login=shop.bot.login,
            key=shop.bot.key,
            encoding=self.game_encoding,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            keepalive_interval=self.keepalive_interval,
            read_retries=1,
            reconnect_attempts=self.reconnect_attempts,
            reconnect_initial_delay=min(1.0, self.retry_initial_delay),
            reconnect_max_delay=self.retry_max_delay,
        )

    @classmethod
    def from_config(cls, config: dict) -> "ShopSettings":
        """Read and check the SHOP section; raise ConfigurationError naming the bad setting."""
        values = config_section(config, CONFIG_SECTION)
        try:
            return cls._read(values)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None

    @classmethod
    def _read(cls, values: dict) -> "ShopSettings":
        def number(key, default, kind=float, minimum=None):
            value = values.get(key)
            return read_number({key: default if value in (None, "") else value}, CONFIG_SECTION, key, default,
                               kind, minimum)

        bots_secret = str(values.get("bots_secret") or DEFAULT_BOTS_SECRET)
        bots = read_shop_bots(bots_secret)
        shops = []
        for code, name in _parse_shops(values.get("shops")):
            shops.append(Shop(code, name, bots.pop(code, None)))
        if bots:
            raise ValueError(f"secret {bots_secret} names shops that {describe_setting(CONFIG_SECTION, 'shops')}"
                             f" does not list: {', '.join(sorted(bots))}")
        encoding = str(values.get("game_encoding") or "utf-8")
        try:
            encoding = check_encoding(encoding)
        except ValueError:
            raise ValueError(f"{describe_setting(CONFIG_SECTION, 'game_encoding')} must be utf-8 or cp1251,"
                             f" got {encoding!r}") from None
        port = number("game_port", 5190, int, 1)
        if port > 65535:
            raise ValueError(f"{describe_setting(CONFIG_SECTION, 'game_port')} must be at most 65535, got {port}")
        settings = cls(
            shops=tuple(shops),
            bots_secret=bots_secret,
            game_host=str(values.get("game_host") or "127.0.0.1"),
            game_port=port,
            game_encoding=encoding,
            interval=number("interval", 3600, minimum=1),
            tick=number("tick", 10, minimum=0.05),
            connect_timeout=number("connect_timeout", 10, minimum=0.1),
            read_timeout=number("read_timeout", 20, minimum=0.1),
            keepalive_interval=number("keepalive_interval", 30, minimum=1),
            reconnect_attempts=number("reconnect_attempts", 5, int, 1),
            page_attempts=number("page_attempts", 3, int, 1),
            page_retry_delay=number("page_retry_delay", 1, minimum=0),
            page_delay=number("page_delay", 0.5, minimum=0),
            max_pages=number("max_pages", 500, int, 1),
            retry_initial_delay=number("retry_initial_delay", 30, minimum=0.01),
            retry_max_delay=number("retry_max_delay", 900, minimum=0.01),
            stale_after=number("stale_after", 600, minimum=1),
            retention_days=number("retention_days", 90, int, 0),
        )
        enabled = [shop.code for shop in settings.shops if shop.enabled]
        if not enabled:
            _log.info("secret %s is not set or names no shop: no shop is read", bots_secret)
        return settings


def _parse_shops(value) -> list[tuple[str, str]]:
    described = describe_setting(CONFIG_SECTION, "shops")
    entries = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    shops: list[tuple[str, str]] = []
    for position, entry in enumerate(entries, start=1):
        code, _, name = str(entry).strip().partition("=")
        code = code.strip()
        if not SHOP_CODE_RE.fullmatch(code):
            raise ValueError(f"{described}: entry {position} needs a code of a-z, 0-9, _ or - (at most 32),"
                             f" as in moscow=Москва; got {code!r}")
        if any(code == known for known, _ in shops):
            raise ValueError(f"{described}: the shop {code!r} is listed twice")
        shops.append((code, name.strip() or code))
    if not shops:
        raise ValueError(f"{described} lists no shop; give code=name pairs, comma-separated")
    return shops


def read_shop_bots(secret_name: str) -> dict[str, BotAccount]:
    """Read the bot of each shop from ``shop=login:KEY`` entries in a secret (empty when it is not set).

    Raises ValueError naming the entry by number and shop, never by key.
    """
    text = read_secret(secret_name, required=False)
    if text is None:
        return {}
    bots: dict[str, BotAccount] = {}
    number = 0
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            entry = entry.strip()
            if not entry:
                continue
            number += 1
            code, separator, account = entry.partition("=")
            code = code.strip()
            if not separator or not SHOP_CODE_RE.fullmatch(code):
                raise ValueError(f"secret {secret_name}: entry {number} is not shop=login:KEY")
            if code in bots:
                raise ValueError(f"secret {secret_name}: entry {number} repeats the shop {code!r}")
            try:
                bots[code] = parse_bot_accounts(account, f"secret {secret_name} entry {number} (shop {code})")[0]
            except ValueError as error:
                raise ValueError(f"{error}; expected shop=login:KEY") from None
    logins = [bot.login.casefold() for bot in bots.values()]
    if len(set(logins)) != len(logins):
        # One account logged in twice would make the game server drop one of the sessions.
        raise ValueError(f"secret {secret_name}: two shops share one bot login; give each shop its own bot")
    return bots
