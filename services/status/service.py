"""The ``status`` service: game constants and rates plus a probe of the game port.

The response is cached in Redis for ``ttl`` seconds and refreshed by a timer,
so requests rarely wait for MariaDB. When MariaDB or Redis cannot respond, the
last good response is served with ``"stale": true`` and its ``updated_at``;
only when no response was ever built does the call fail.
"""

import json
import socket
from datetime import datetime, timezone
from logging import getLogger

import eventlet
import pymysql
import redis as redis_library
from nameko.rpc import rpc

from services.common.errors import ServiceUnavailable
from services.common.mariadb import MariaDB, MariaDBUnavailable
from services.common.redis import Redis
from services.common.request_context import RequestContext
from services.common.timer import config_timer
from services.status.dependencies import StatusSettingsProvider


_log = getLogger(__name__)

CACHE_KEY = "tzr:status"
FRESH_KEY = "tzr:status:fresh"
#: Seconds the last good response stays in Redis for stale responses (a week).
STALE_KEEP = 7 * 24 * 3600

# Constants that are published, and where they go in the response. Every other
# row of the game's constants table stays private.
RATE_CONSTANTS = {
    "RateExp": "exp",
    "RatePvp": "pvp",
    "RatePve": "pve",
    "RateColorMob": "color_mob",
    "RateSkill": "skill",
}
PUBLISHED_CONSTANTS = ("ServerStatus", "CLIENT_STATUS", *RATE_CONSTANTS)

_last_good: dict | None = None  # in this process, for when Redis is down too


def probe(host: str, port: int, timeout: float) -> bool:
    """Tell whether the game port accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def shape(constants: dict, online: bool) -> dict:
    """Build the public answer from the published constants and the probe."""
    def number(name):
        value = constants.get(name)
        return None if value is None else float(value)

    return {
        "server_status": number("ServerStatus"),
        "rates": {public: number(name) for name, public in RATE_CONSTANTS.items()},
        "client_status": number("CLIENT_STATUS"),
        "online": online,
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stale": False,
    }


class StatusService:
    """Serves the game server's published constants, rates and liveness."""

    name = "status"

    context = RequestContext()
    gamedb = MariaDB("GAMEDB")
    redis = Redis("REDIS")
    settings = StatusSettingsProvider()

    @rpc
    def get_status(self):
        """Return ``{"server_status", "rates", "client_status", "online", "updated_at", "stale"}``.

        Raises ``ServiceUnavailable`` when no answer can be built and none
        was built before.
        """
        try:
            if self.redis.exists(FRESH_KEY):
                cached = self.redis.get(CACHE_KEY)
                if cached is not None:
                    return json.loads(cached)
        except redis_library.RedisError as error:
            _log.warning("status cache unavailable: %s", error)
        return self._refresh(serve_stale=True)

    @config_timer("STATUS", "refresh_interval", default=15)
    def refresh(self):
        self._refresh(serve_stale=False)

    @rpc
    def ready(self):
        """Return each backend's state: ``{"mariadb": bool, "redis": bool, "game_port": bool}``."""
        settings = self.settings
        try:
            self.gamedb.ping()
            mariadb = True
        except MariaDBUnavailable:
            mariadb = False
        return {
            "mariadb": mariadb,
            "redis": self._redis_ok(),
            "game_port": probe(settings.game_host, settings.game_port, settings.probe_timeout),
        }

    def _redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis_library.RedisError:
            return False

    def _read_constants(self) -> dict:
        placeholders = ", ".join(["%s"] * len(PUBLISHED_CONSTANTS))
        with self.gamedb.connection() as connection, connection.cursor() as cursor:
            cursor.execute(
                f"SELECT Name, Value FROM constants WHERE Name IN ({placeholders})", PUBLISHED_CONSTANTS,
            )
            return dict(cursor.fetchall())

    def _refresh(self, serve_stale: bool) -> dict:
        global _last_good
        settings = self.settings
        online = probe(settings.game_host, settings.game_port, settings.probe_timeout)
        try:
            with eventlet.Timeout(settings.query_timeout):
                constants = self._read_constants()
        except (MariaDBUnavailable, pymysql.MySQLError, eventlet.Timeout, OSError) as error:
            _log.warning("status refresh failed, MariaDB did not respond: %s", error)
            return self._stale(online) if serve_stale else {}

        answer = shape(constants, online)
        _last_good = answer
        try:
            with self.redis.pipeline() as pipe:
                pipe.set(CACHE_KEY, json.dumps(answer), ex=STALE_KEEP)
                pipe.set(FRESH_KEY, "1", ex=settings.ttl)
                pipe.execute()
        except redis_library.RedisError as error:
            _log.warning("status cache not updated: %s", error)
        return answer

    def _stale(self, online: bool) -> dict:
        cached = None
        try:
            raw = self.redis.get(CACHE_KEY)
            cached = json.loads(raw) if raw is not None else None
        except redis_library.RedisError as error:
            _log.warning("status cache unavailable: %s", error)
        cached = cached or _last_good
        if cached is None:
            raise ServiceUnavailable("no status was ever built and MariaDB does not respond")
        return {**cached, "online": online, "stale": True}
