"""The COLLECT config section and the bot accounts secret, checked at service start."""

from dataclasses import dataclass, field
from logging import getLogger

from nameko.exceptions import ConfigurationError

from services.common.config import section as config_section
from services.common.secrets import read_secret
from services.game.bots import BotAccount, parse_bot_accounts
from services.game.client import BotSettings
from services.game.framing import check_encoding


_log = getLogger(__name__)

CONFIG_SECTION = "COLLECT"
DEFAULT_BOTS_SECRET = "TZR_COLLECT_BOTS"
#: The largest battle id PostgreSQL's bigint holds.
MAX_BATTLE_ID = 2**63 - 1


@dataclass(frozen=True)
class CollectSettings:
    """Collection settings; times are in seconds.

    ``bots`` is empty when the bots secret is not set, and collection is
    then off: jobs cannot start, but stored jobs can still be listed.
    """

    game_host: str
    game_port: int
    game_encoding: str
    bots: tuple[BotAccount, ...] = field(repr=False)
    bots_secret: str
    connect_timeout: float
    read_timeout: float
    battle_timeout: float
    keepalive_interval: float
    #: Requests per battle id at most, the first one included, when they fail transiently.
    attempts: int
    retry_initial_delay: float
    retry_max_delay: float
    #: A job fails after this many ids in a row failed (the game server is down, say).
    max_consecutive_failures: int
    #: ``<ERROR code>`` values that mean the battle does not exist.
    not_found_codes: frozenset[str]
    #: A forward job waits for new battles after this many missing ids in a row past the newest fetched one.
    head_misses: int
    poll_interval: float
    floor: int
    forward_start: int | None
    auto_forward: bool
    schedule_interval: float
    #: How often each service process looks for jobs to take up and for abort requests.
    supervise_interval: float

    @property
    def enabled(self) -> bool:
        return bool(self.bots)

    def bot_settings(self, account: BotAccount) -> BotSettings:
        """Return the session settings of one bot.

        The session itself neither retries requests nor reconnects more than
        once, so that every retry goes through the collector's backoff and
        is counted in the battle's attempts.
        """
        return BotSettings(
            host=self.game_host,
            port=self.game_port,
            login=account.login,
            key=account.key,
            encoding=self.game_encoding,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            battle_timeout=self.battle_timeout,
            keepalive_interval=self.keepalive_interval,
            read_retries=0,
            reconnect_attempts=1,
        )

    @classmethod
    def from_config(cls, config: dict) -> "CollectSettings":
        """Read and check the COLLECT section; raise ConfigurationError naming the bad key."""
        section = config_section(config, CONFIG_SECTION)
        reader = _Reader(section)
        bots_secret = str(section.get("bots_secret") or DEFAULT_BOTS_SECRET)
        settings = cls(
            game_host=reader.text("game_host", "127.0.0.1"),
            game_port=reader.integer("game_port", 5190, minimum=1, maximum=65535),
            game_encoding=reader.encoding("game_encoding"),
            bots=tuple(_read_bots(bots_secret)),
            bots_secret=bots_secret,
            connect_timeout=reader.seconds("connect_timeout", 10),
            read_timeout=reader.seconds("read_timeout", 10),
            battle_timeout=reader.seconds("battle_timeout", 20),
            keepalive_interval=reader.seconds("keepalive_interval", 30),
            attempts=reader.integer("attempts", 4, minimum=1),
            retry_initial_delay=reader.seconds("retry_initial_delay", 1, allow_zero=True),
            retry_max_delay=reader.seconds("retry_max_delay", 30, allow_zero=True),
            max_consecutive_failures=reader.integer("max_consecutive_failures", 50, minimum=1),
            not_found_codes=reader.codes("not_found_codes", "NOT_FOUND"),
            head_misses=reader.integer("head_misses", 20, minimum=1),
            poll_interval=reader.seconds("poll_interval", 60),
            floor=reader.integer("floor", 1, minimum=1, maximum=MAX_BATTLE_ID),
            forward_start=reader.optional_integer("forward_start", minimum=1, maximum=MAX_BATTLE_ID),
            auto_forward=reader.boolean("auto_forward", False),
            schedule_interval=reader.seconds("schedule_interval", 60),
            supervise_interval=reader.seconds("supervise_interval", 1),
        )
        if settings.forward_start is not None and settings.forward_start < settings.floor:
            raise ConfigurationError(
                f"config {CONFIG_SECTION}.forward_start ({settings.forward_start}) is below"
                f" {CONFIG_SECTION}.floor ({settings.floor})"
            )
        if settings.auto_forward and not settings.enabled:
            raise ConfigurationError(
                f"config {CONFIG_SECTION}.auto_forward is on, but the secret {bots_secret} is not set:"
                f" set {bots_secret} or {bots_secret}_FILE to the bot accounts (login:KEY entries)"
            )
        return settings


def _read_bots(secret_name: str) -> list[BotAccount]:
    text = read_secret(secret_name, required=False)
    if text is None:
        _log.info("secret %s is not set: battle-log collection is off", secret_name)
        return []
    try:
        return parse_bot_accounts(text, f"secret {secret_name}")
    except ValueError as error:
        # The message names entries by number and login, never by key.
        raise ConfigurationError(f"{error}; expected login:KEY entries, one a line or comma-separated") from None


class _Reader:
    """Typed access to a config section, with errors that name the key and its value."""

    def __init__(self, section: dict):
        self.section = section

    def _fail(self, key: str, expected: str, value) -> ConfigurationError:
        return ConfigurationError(f"config {CONFIG_SECTION}.{key} must be {expected}, got {value!r}")

    def text(self, key: str, default: str) -> str:
        value = self.section.get(key)
        if value is None or value == "":
            return default
        return str(value)

    def encoding(self, key: str) -> str:
        value = self.text(key, "utf-8")
        try:
            return check_encoding(value)
        except ValueError:
            raise self._fail(key, "utf-8 or cp1251", value) from None

    def integer(self, key: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.optional_integer(key, minimum, maximum)
        return default if value is None else value

    def optional_integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.section.get(key)
        if value is None or value == "":
            return None
        bounds = f"an integer from {minimum}" if minimum is not None else "an integer"
        if maximum is not None:
            bounds += f" to {maximum}"
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise self._fail(key, bounds, value) from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self._fail(key, bounds, value)
        return number

    def seconds(self, key: str, default: float, allow_zero: bool = False) -> float:
        value = self.section.get(key)
        if value is None or value == "":
            return float(default)
        expected = "a number of seconds, zero or more" if allow_zero else "a positive number of seconds"
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise self._fail(key, expected, value) from None
        if number < 0 or (number == 0 and not allow_zero) or number != number:
            raise self._fail(key, expected, value)
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self.section.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise self._fail(key, "true or false", value)

    def codes(self, key: str, default: str) -> frozenset[str]:
        value = self.section.get(key)
        if value is None or value == "":
            value = default
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        codes = frozenset(str(item).strip() for item in items if str(item).strip())
        if not codes:
            raise self._fail(key, "one or more error codes, comma-separated", value)
        return codes
