"""The ``battles`` service: read-only analytics over the loaded battle logs.

Every method takes the parameters of one query as a mapping (the query
string of the gateway's route, or JSON values over RPC), checks them with
:mod:`services.battles.params` and queries PostgreSQL. List answers are
pages: ``{"items", "total", "page", "limit", "has_more"}``.
"""

from dataclasses import dataclass
from logging import getLogger

import psycopg
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from psycopg_pool import PoolTimeout

from services.battles import params as p
from services.battles import queries
from services.battles.params import Param
from services.common.config import section as config_section
from services.common.errors import ServiceError, ServiceUnavailable
from services.common.postgres import Postgres
from services.common.request_context import RequestContext


_log = getLogger(__name__)

CONFIG_SECTION = "BATTLES"
DEFAULT_TIMEZONE = "Europe/Moscow"


@dataclass(frozen=True)
class BattlesSettings:
    """The BATTLES config section, checked."""

    timezone: str

    @classmethod
    def from_config(cls, config: dict) -> "BattlesSettings":
        section = config_section(config, CONFIG_SECTION)
        zone = str(section.get("timezone") or DEFAULT_TIMEZONE)
        p.parse({"tz": zone}, {"tz": Param("timezone")})
        return cls(timezone=zone)


class BattlesSettingsProvider(DependencyProvider):
    def setup(self):
        try:
            self.settings = BattlesSettings.from_config(self.container.config)
        except ServiceError as error:
            raise ValueError(f"config {CONFIG_SECTION}.timezone is not a known time zone") from error

    def get_dependency(self, worker_ctx):
        return self.settings


# Parameters of each query.
SEARCH = {
    **p.PAGE, **p.PERIOD, **p.SERVER, **p.LOCATION,
    "player": Param("text", max_length=64),
    "clan": Param("text", max_length=64),
    "monster": Param("text", max_length=32),
    "type": Param("text", max_length=16),
    "pvp": Param("boolean"),
}
ONE_BATTLE = {**p.SERVER}
PROFILE = {**p.PERIOD, **p.SERVER}
RELATIONS = {**p.PAGE, **p.PERIOD, **p.SERVER}
TOP = {
    **p.PAGE, **p.PERIOD,
    "metric": Param("choice", default="battles", choices=tuple(queries.TOP_METRICS)),
    "min_battles": Param("integer", default=10, minimum=1, maximum=1_000_000),
}
CLAN = {**p.PERIOD, **p.SERVER, "members": Param("integer", default=20, minimum=1, maximum=100)}
WARS = {
    **p.PAGE, **p.PERIOD, **p.SERVER,
    "clan": Param("text", max_length=64),
    "min_battles": Param("integer", default=1, minimum=1, maximum=1_000_000),
}
HEATMAP = {**p.PERIOD, **p.SERVER, "tz": Param("timezone"), "pvp": Param("boolean")}
LOCATIONS = {**p.PAGE, **p.PERIOD, **p.SERVER}
HOTSPOTS = {**p.PAGE, **p.PERIOD, **p.SERVER, "min_battles": Param("integer", default=5, minimum=1, maximum=1_000_000)}
RESOURCES = {
    **p.PAGE, **p.PERIOD, **p.LOCATION,
    "name": Param("text", max_length=100),
    "category": Param("choice", choices=("resource", "monster_part", "other")),
    "group": Param("choice", default="day", choices=("day", "total")),
}
MONSTERS = {**p.PAGE, **p.PERIOD, "kind": Param("text", max_length=32), "elite": Param("boolean")}
BOTS = {**p.PAGE, **p.PERIOD, "min_score": Param("number", default=0.4, minimum=0, maximum=1)}
QUALITY = {**p.PERIOD, **p.SERVER, "gaps": Param("integer", default=20, minimum=0, maximum=1000)}


def run_query(pool, query, *args):
    """Run ``query(connection, *args)`` on a read-only connection from ``pool``.

    Database failures become :class:`ServiceUnavailable`: no connection
    within the pool timeout, a statement cancelled by the statement timeout,
    or a connection that broke.
    """
    name = getattr(query, "__name__", "query")
    try:
        with pool.connection() as connection:
            connection.read_only = True
            return query(connection, *args)
    except PoolTimeout as error:
        _log.error("%s: no database connection: %s", name, error)
        raise ServiceUnavailable(f"the analytics database did not answer: {error}") from None
    except psycopg.errors.QueryCanceled as error:
        _log.error("%s: the query ran past the statement timeout: %s", name, error)
        raise ServiceUnavailable("the query took too long") from None
    except psycopg.OperationalError as error:
        _log.error("%s: the database failed: %s", name, error)
        raise ServiceUnavailable(f"the analytics database failed: {error}") from None


EXPECTED = (ServiceError,)


class BattlesService:
    """Serves the analytics API: battles, players, clans, time and map, economy, integrity.

    Config section ``BATTLES``: ``dsn``, ``timezone`` (of the activity
    heatmap, default Europe/Moscow), ``statement_timeout`` (milliseconds),
    ``pool_min``, ``pool_max``, ``pool_timeout``.
    """

    name = "battles"

    db = Postgres(CONFIG_SECTION)
    settings = BattlesSettingsProvider()
    context = RequestContext()

    @rpc
    def ready(self):
        """Return ``{"postgres": bool}``."""
        try:
            with self.db.connection(timeout=2) as connection:
                connection.execute("SELECT 1")
            return {"postgres": True}
        except (PoolTimeout, psycopg.Error):
            return {"postgres": False}

    # Battles.

    @rpc(expected_exceptions=EXPECTED)
    def search_battles(self, params=None):
        """Return battles matching player, clan, monster kind, type, PvP, location, server and period, newest first."""
        return run_query(self.db, queries.search_battles, p.parse(params, SEARCH))

    @rpc(expected_exceptions=EXPECTED)
    def get_battle(self, battle_id, params=None):
        """Return one battle with its participants, kills, loot and damage per turn and side."""
        return run_query(self.db, queries.get_battle, p.battle_id(battle_id), p.parse(params, ONE_BATTLE))

    @rpc(expected_exceptions=EXPECTED)
    def raw_log(self, battle_id, params=None):
        """Return the stored log file of one battle, base64-encoded in ``content_base64``."""
        return run_query(self.db, queries.raw_log, p.battle_id(battle_id), p.parse(params, ONE_BATTLE))

    # Players.

    @rpc(expected_exceptions=EXPECTED)
    def player_profile(self, login, params=None):
        """Return a player's battles, survival, kills by kind, damage by hit kind and effect, heals and loot."""
        return run_query(self.db, queries.player_profile, p.identifier(login, "login", 64), p.parse(params, PROFILE))

    @rpc(expected_exceptions=EXPECTED)
    def top_players(self, params=None):
        """Rank players by a named metric over whole UTC days."""
        return run_query(self.db, queries.top_players, p.parse(params, TOP))

    @rpc(expected_exceptions=EXPECTED)
    def player_allies(self, login, params=None):
        """List the players seen on the same side as ``login``, most shared battles first."""
        login = p.identifier(login, "login", 64)
        return run_query(self.db, queries.player_relations, login, p.parse(params, RELATIONS), True)

    @rpc(expected_exceptions=EXPECTED)
    def player_rivals(self, login, params=None):
        """List the players seen on another side than ``login``, with kills each way."""
        login = p.identifier(login, "login", 64)
        return run_query(self.db, queries.player_relations, login, p.parse(params, RELATIONS), False)

    # Clans.

    @rpc(expected_exceptions=EXPECTED)
    def clan_profile(self, name, params=None):
        """Return a clan's members, battles, survival, kills and wars."""
        return run_query(self.db, queries.clan_profile, p.identifier(name, "clan", 64), p.parse(params, CLAN))

    @rpc(expected_exceptions=EXPECTED)
    def clan_wars(self, params=None):
        """List the pairs of clans that met on opposite sides, most battles first."""
        return run_query(self.db, queries.clan_wars, p.parse(params, WARS))

    # Time and map.

    @rpc(expected_exceptions=EXPECTED)
    def activity_heatmap(self, params=None):
        """Count battles by weekday (Monday first) and hour in a time zone."""
        return run_query(self.db, queries.activity_heatmap, p.parse(params, HEATMAP), self.settings.timezone)

    @rpc(expected_exceptions=EXPECTED)
    def locations(self, params=None):
        """Count battles per world location, busiest first."""
        return run_query(self.db, queries.locations, p.parse(params, LOCATIONS))

    @rpc(expected_exceptions=EXPECTED)
    def pvp_hotspots(self, params=None):
        """List the locations with the most PvP battles."""
        return run_query(self.db, queries.pvp_hotspots, p.parse(params, HOTSPOTS))

    # Economy.

    @rpc(expected_exceptions=EXPECTED)
    def resources(self, params=None):
        """Sum the items picked up per battle day (or in total) and resource, optionally at one location."""
        return run_query(self.db, queries.resources, p.parse(params, RESOURCES))

    @rpc(expected_exceptions=EXPECTED)
    def monsters(self, params=None):
        """Return statistics per monster kind and elite marker."""
        return run_query(self.db, queries.monsters, p.parse(params, MONSTERS))

    # Integrity.

    @rpc(expected_exceptions=EXPECTED)
    def bot_candidates(self, params=None):
        """List the players whose bot-suspicion score reaches ``min_score`` on some day, with the reasons."""
        return run_query(self.db, queries.bot_candidates, p.parse(params, BOTS))

    @rpc(expected_exceptions=EXPECTED)
    def data_quality(self, params=None):
        """Report files by outcome, quarantine reasons, data-quality flags, gaps in battle ids and the last ingestion."""
        return run_query(self.db, queries.data_quality, p.parse(params, QUALITY))
