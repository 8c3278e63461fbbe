"""Battle analytics routes of the gateway: read-only queries of the ``battles`` service.

Each route takes its parameters from the query string and passes them to the
service unchanged; the service checks them and answers 400 naming each bad
one. The routes need an API key, like the account routes.
"""

import base64

from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import rpc
from services.gateway.openapi import LANGUAGE, error_responses
from services.gateway.web import api, request_id_of


def _query(request) -> dict:
    # A repeated parameter stays a list, which the service rejects by name.
    return {name: values[0] if len(values) == 1 else values for name, values in request.args.lists()}


class AnalyticsRoutes:
    """Mixed into :class:`services.gateway.service.GatewayService`."""

    battles = RpcProxy("battles")

    def _analytics(self, request, route: str, method: str, *args):
        self.guard.admit(request, route)
        result = rpc.call(self.battles, method, *args, _query(request), timeout=self.settings.timeouts["battles"])
        return self._ok(request, **result)

    @api("GET", "/api/battles", route="battles")
    def search_battles(self, request):
        return self._analytics(request, "battles", "search_battles")

    @api("GET", "/api/battles/<battle_id>", route="battle")
    def get_battle(self, request, battle_id):
        return self._analytics(request, "battle", "get_battle", battle_id)

    @api("GET", "/api/battles/<battle_id>/raw", route="battle_raw")
    def battle_raw(self, request, battle_id):
        self.guard.admit(request, "battle_raw")
        result = rpc.call(self.battles, "raw_log", battle_id, _query(request),
                          timeout=self.settings.timeouts["battles"])
        data = base64.b64decode(result["content_base64"])
        try:
            data.decode("utf-8")
            charset = "utf-8"
        except UnicodeDecodeError:
            charset = "windows-1251"
        return Response(data, content_type=f"application/xml; charset={charset}", headers={
            "Content-Disposition": f'inline; filename="{result["battle_id"]}.tzb"',
            "X-Content-SHA256": result["sha256"],
            "X-Request-Id": request_id_of(request),
        })

    @api("GET", "/api/players/top", route="players_top")
    def top_players(self, request):
        return self._analytics(request, "players_top", "top_players")

    @api("GET", "/api/players/<login>", route="player")
    def player_profile(self, request, login):
        return self._analytics(request, "player", "player_profile", login)

    @api("GET", "/api/players/<login>/allies", route="player_allies")
    def player_allies(self, request, login):
        return self._analytics(request, "player_allies", "player_allies", login)

    @api("GET", "/api/players/<login>/rivals", route="player_rivals")
    def player_rivals(self, request, login):
        return self._analytics(request, "player_rivals", "player_rivals", login)

    @api("GET", "/api/clans/wars", route="clan_wars")
    def clan_wars(self, request):
        return self._analytics(request, "clan_wars", "clan_wars")

    @api("GET", "/api/clans/<name>", route="clan")
    def clan_profile(self, request, name):
        return self._analytics(request, "clan", "clan_profile", name)

    @api("GET", "/api/activity/heatmap", route="activity_heatmap")
    def activity_heatmap(self, request):
        return self._analytics(request, "activity_heatmap", "activity_heatmap")

    @api("GET", "/api/locations", route="locations")
    def locations(self, request):
        return self._analytics(request, "locations", "locations")

    @api("GET", "/api/locations/pvp-hotspots", route="pvp_hotspots")
    def pvp_hotspots(self, request):
        return self._analytics(request, "pvp_hotspots", "pvp_hotspots")

    @api("GET", "/api/economy/resources", route="resources")
    def resources(self, request):
        return self._analytics(request, "resources", "resources")

    @api("GET", "/api/economy/monsters", route="monsters")
    def monsters(self, request):
        return self._analytics(request, "monsters", "monsters")

    @api("GET", "/api/integrity/bots", route="bot_candidates")
    def bot_candidates(self, request):
        return self._analytics(request, "bot_candidates", "bot_candidates")

    @api("GET", "/api/integrity/quality", route="data_quality")
    def data_quality(self, request):
        return self._analytics(request, "data_quality", "data_quality")


# ---------------------------------------------------------------------------
# OpenAPI.


def _param(name: str, schema: dict, description: str, where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema}


_PAGE = [
    _param("page", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}, "Page number, from 1."),
    _param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Rows per page."),
]
_PERIOD = [
    _param("since", {"type": "string"}, "Start of the period, inclusive: an ISO 8601 date or date-time "
           "(UTC unless it has an offset)."),
    _param("until", {"type": "string"}, "End of the period, exclusive; later than since."),
]
_DAY_PERIOD = [
    _param("since", {"type": "string"}, "Start of the period: this route counts whole UTC days, "
           "from the day that holds since."),
    _param("until", {"type": "string"}, "End of the period, exclusive: up to the day that holds the moment "
           "before until."),
]
_SERVER = [_param("server", {"type": "string", "maxLength": 64}, "Only battles of this game server.")]
_LOCATION = [
    _param("x", {"type": "integer"}, "World-map x of the battle."),
    _param("y", {"type": "integer"}, "World-map y of the battle."),
]
_BATTLE_ID = _param("battle_id", {"type": "integer", "minimum": 1}, "The game's battle id.", "path", True)
_LOGIN = _param("login", {"type": "string", "maxLength": 64}, "The player's login, exactly as in the logs.",
                "path", True)
_CLAN = _param("name", {"type": "string", "maxLength": 64}, "The clan name, exactly as in the logs.", "path", True)

_ERRORS = error_responses({
    400: "A bad parameter (`validation_error`); `fields` names each one.",
    401: "Missing or unknown API key (`invalid_api_key`).",
    429: "Too many requests (`rate_limited`); see `Retry-After`.",
    503: "The analytics service or its database is down, or the query took too long (`service_unavailable`).",
})
_NOT_FOUND = {
    "battle": error_responses({404: "`battle_not_found`: no battle with this id is loaded."}),
    "raw": error_responses({404: "`battle_not_found`, or `log_not_stored` when the file is gone."}),
    "player": error_responses({404: "`player_not_found`: the login is in no loaded battle."}),
    "clan": error_responses({404: "`clan_not_found`: the clan is in no loaded battle."}),
}


def _ok(schema_name: str, description: str) -> dict:
    return {"200": {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}}


def _get(summary: str, parameters: list, schema_name: str, description: str, not_found: str | None = None) -> dict:
    responses = {**_ok(schema_name, description), **_ERRORS}
    if not_found:
        responses.update(_NOT_FOUND[not_found])
    return {"get": {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": [*parameters, LANGUAGE],
        "responses": responses,
    }}


def _page_of(item: dict) -> dict:
    return {
        "type": "object",
        "required": ["ok", "items", "total", "page", "limit", "has_more", "request_id"],
        "properties": {
            "ok": {"const": True},
            "items": {"type": "array", "items": item},
            "total": {"type": "integer", "description": "Rows matching, on every page."},
            "page": {"type": "integer"},
            "limit": {"type": "integer"},
            "has_more": {"type": "boolean", "description": "A later page has rows."},
            "request_id": {"type": "string"},
        },
    }


_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}

_BATTLE_SUMMARY = {
    "type": "object",
    "properties": {
        "server": {"type": "string"},
        "battle_id": _INT,
        "start": _TIME,
        "end": _TIME,
        "turns": _INT_OR_NULL,
        "type": _TEXT_OR_NULL,
        "x": _INT_OR_NULL,
        "y": _INT_OR_NULL,
        "players": _INT,
        "monsters": _INT,
        "pvp": {"type": "boolean", "description": "Players fought on two or more sides."},
        "flags": {"type": "array", "items": {"type": "string"}, "description": "Data-quality flags."},
        "player_logins": {"type": "array", "items": {"type": "string"}},
        "monster_kinds": {**_COUNTS, "description": "Monster units per kind."},
    },
}

OPENAPI_SCHEMAS = {
    "BattlePage": _page_of(_BATTLE_SUMMARY),
    "Battle": {
        "type": "object",
        "description": "A battle summary plus the fields below.",
        "properties": {
            **_BATTLE_SUMMARY["properties"],
            "participants": {"type": "array", "items": {"type": "object"},
                             "description": "Every unit with side, level, clan, profession, creature type, "
                                            "survival, escape, turn joined, kills, damage and heal."},
            "kills": {"type": "array", "items": {"type": "object", "properties": {
                "turn": _INT_OR_NULL, "frame": _INT_OR_NULL, "killer": {"type": "string"},
                "victim": {"type": "string"}}}},
            "loot": {"type": "array", "items": {"type": "object", "properties": {
                "login": {"type": "string"}, "item_id": _INT, "template": _TEXT_OR_NULL, "name": _TEXT_OR_NULL,
                "category": {"type": "string"}, "qty": _INT, "turn": _INT_OR_NULL}}},
            "damage_per_turn": {"type": "array", "items": {"type": "object", "properties": {
                "turn": _INT_OR_NULL, "side": _INT_OR_NULL, "attacks": _INT, "damage": _INT, "heal": _INT}}},
        },
    },
    "PlayerProfile": {
        "type": "object",
        "properties": {
            "login": {"type": "string"},
            "battles": _INT, "pvp_battles": _INT, "pve_battles": _INT, "survived": _INT, "deaths": _INT,
            "escapes": _INT, "survival_rate": _NUMBER_OR_NULL,
            "kills": {"type": "object", "properties": {"monsters": _INT, "players": _INT,
                                                       "by_kind": {**_COUNTS, "description": "Kills per monster "
                                                                   "kind, and `player`."}}},
            "damage": {"type": "object", "description": "`dealt` and `taken`: the total of positive hit amounts, "
                       "`by_hit_kind` (normal, critical, piercing) and `effects` (strength per effect code)."},
            "healed": {"type": "integer", "description": "Heal received."},
            "heals_given": _INT,
            "loot": {"type": "object", "properties": {"total_qty": _INT, "items": {"type": "array"}}},
            "professions": {"type": "array", "items": _INT},
            "clans": {"type": "array", "items": {"type": "string"}},
            "clan": _TEXT_OR_NULL,
            "level": {"type": "object"},
            "servers": {"type": "array", "items": {"type": "string"}},
            "first_seen": _TIME,
            "last_seen": _TIME,
        },
    },
    "TopPlayers": _page_of({"type": "object", "properties": {
        "rank": _INT, "login": {"type": "string"}, "value": {"type": "number"}, "battles": _INT,
        "survival_rate": {"type": "number"}, "kills": _INT, "last_seen": _TIME}}),
    "Relations": _page_of({"type": "object", "properties": {
        "login": {"type": "string"}, "clan": _TEXT_OR_NULL, "battles": _INT, "last_battle": _TIME,
        "kills": {"type": "integer", "description": "Rivals only: times the player killed this rival."},
        "killed_by": {"type": "integer", "description": "Rivals only: times this rival killed the player."}}}),
    "ClanProfile": {"type": "object", "properties": {
        "clan": {"type": "string"}, "members": _INT, "battles": _INT, "pvp_battles": _INT,
        "participations": _INT, "survival_rate": _NUMBER_OR_NULL, "kills_monsters": _INT, "kills_players": _INT,
        "damage_dealt": _INT, "damage_taken": _INT, "first_seen": _TIME, "last_seen": _TIME,
        "top_members": {"type": "array", "items": {"type": "object"}},
        "wars": {"type": "array", "items": {"type": "object"}}}},
    "ClanWars": _page_of({"type": "object", "properties": {
        "clan_a": {"type": "string"}, "clan_b": {"type": "string"}, "battles": _INT,
        "kills_a": {"type": "integer", "description": "Kills of clan_b members by clan_a members."},
        "kills_b": _INT, "last_battle": _TIME}}),
    "Heatmap": {"type": "object", "properties": {
        "timezone": {"type": "string"},
        "weekdays": {"type": "array", "items": {"type": "string"}, "description": "Monday first."},
        "cells": {"type": "array", "items": {"type": "array", "items": _INT},
                  "description": "7 rows (weekdays) of 24 battle counts (hours)."},
        "total": _INT}},
    "Locations": _page_of({"type": "object", "properties": {
        "x": _INT, "y": _INT, "battles": _INT, "pvp_battles": _INT, "players": _INT, "monsters": _INT,
        "last_battle": _TIME}}),
    "Hotspots": _page_of({"type": "object", "properties": {
        "x": _INT, "y": _INT, "battles": _INT, "pvp_battles": _INT, "pvp_share": {"type": "number"},
        "player_kills": _INT, "last_pvp": _TIME}}),
    "Resources": _page_of({"type": "object", "properties": {
        "day": {"type": "string", "format": "date", "description": "Only with group=day."},
        "name": _TEXT_OR_NULL, "category": {"type": "string"}, "qty": _INT, "pickups": _INT, "battles": _INT,
        "qty_per_battle": _NUMBER_OR_NULL}}),
    "Monsters": _page_of({"type": "object", "properties": {
        "kind": {"type": "string"}, "name": _TEXT_OR_NULL, "elite": {"type": "boolean"}, "battles": _INT,
        "monsters": _INT, "killed": _INT, "kill_rate": _NUMBER_OR_NULL, "min_level": _INT_OR_NULL,
        "max_level": _INT_OR_NULL, "avg_level": _NUMBER_OR_NULL, "damage_dealt": _INT, "damage_taken": _INT,
        "players_faced": _INT, "player_deaths": _INT, "player_survival_rate": _NUMBER_OR_NULL}}),
    "BotCandidates": _page_of({"type": "object", "properties": {
        "login": {"type": "string"}, "score": {"type": "number"},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "Score components of 0.7 or more: volume, regularity, short_idles, "
                                   "round_the_clock, marathon, flawless_farming."},
        "day": {"type": "string", "format": "date", "description": "The day with the highest score."},
        "flagged_days": _INT, "days": _INT, "battles": _INT, "active_hours": _INT, "idles": _INT,
        "idle_median_seconds": _NUMBER_OR_NULL, "idle_cv": _NUMBER_OR_NULL, "short_idle_share": _NUMBER_OR_NULL,
        "longest_session_hours": {"type": "number"}, "survival_rate": {"type": "number"},
        "kills_per_battle": {"type": "number"}}}),
    "DataQuality": {"type": "object", "properties": {
        "files": {"type": "object", "description": "Input files by outcome."},
        "quarantined_by_reason": _COUNTS,
        "battles": _INT, "first_battle_id": _INT_OR_NULL, "last_battle_id": _INT_OR_NULL,
        "flags": {**_COUNTS, "description": "Battles per data-quality flag."},
        "gaps": {"type": "object", "description": "Ids missing between loaded battles: `ranges`, `missing_ids` "
                 "and the `largest` runs ({server, first, last, missing})."},
        "last_ingestion": {"type": ["object", "null"]}}},
}

_BOOLEAN = {"type": "string", "enum": ["true", "false"]}

OPENAPI_PATHS = {
    "/api/battles": _get(
        "Search battles, newest first.",
        [*_PAGE, *_PERIOD, *_SERVER, *_LOCATION,
         _param("player", {"type": "string"}, "A player's login: battles they took part in."),
         _param("clan", {"type": "string"}, "Battles with a member of this clan."),
         _param("monster", {"type": "string"}, "Battles with a monster of this kind code (rat, sti, scr...)."),
         _param("type", {"type": "string"}, "The header's battle type `f`."),
         _param("pvp", _BOOLEAN, "Only PvP battles (true) or only others (false).")],
        "BattlePage", "A page of battles.",
    ),
    "/api/battles/{battle_id}": _get(
        "One battle with participants, kills, loot and damage per turn and side.",
        [_BATTLE_ID, *_SERVER], "Battle", "The battle.", "battle",
    ),
    "/api/battles/{battle_id}/raw": {"get": {
        "summary": "The stored log file of a battle, as XML.",
        "security": [{"apiKey": []}],
        "parameters": [_BATTLE_ID, *_SERVER, LANGUAGE],
        "responses": {
            "200": {"description": "The log as it was loaded.", "content": {"application/xml": {}}},
            **_ERRORS, **_NOT_FOUND["raw"],
        },
    }},
    "/api/players/top": _get(
        "Players ranked by a metric, over whole UTC days.",
        [*_PAGE, *_DAY_PERIOD,
         _param("metric", {"type": "string", "enum": [
             "battles", "pvp_battles", "survival_rate", "kills", "kills_monsters", "kills_players",
             "kills_per_battle", "damage_dealt", "damage_taken", "healed", "loot", "escapes"],
             "default": "battles"}, "What to rank by."),
         _param("min_battles", {"type": "integer", "minimum": 1, "default": 10},
                "Leave out players with fewer battles in the period.")],
        "TopPlayers", "A page of ranked players.",
    ),
    "/api/players/{login}": _get(
        "A player's profile.", [_LOGIN, *_PERIOD, *_SERVER], "PlayerProfile", "The profile.", "player",
    ),
    "/api/players/{login}/allies": _get(
        "Players met on the same side, most shared battles first.",
        [_LOGIN, *_PAGE, *_PERIOD, *_SERVER], "Relations", "A page of allies.", "player",
    ),
    "/api/players/{login}/rivals": _get(
        "Players met on another side, most shared battles first, with kills each way.",
        [_LOGIN, *_PAGE, *_PERIOD, *_SERVER], "Relations", "A page of rivals.", "player",
    ),
    "/api/clans/wars": _get(
        "Pairs of clans that fought on opposite sides, most battles first.",
        [*_PAGE, *_PERIOD, *_SERVER,
         _param("clan", {"type": "string"}, "Only pairs with this clan."),
         _param("min_battles", {"type": "integer", "minimum": 1, "default": 1}, "Fewest shared battles.")],
        "ClanWars", "A page of clan pairs.",
    ),
    "/api/clans/{name}": _get(
        "A clan's profile: members, battles, survival, kills and wars.",
        [_CLAN, *_PERIOD, *_SERVER,
         _param("members", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "How many top members to list.")],
        "ClanProfile", "The profile.", "clan",
    ),
    "/api/activity/heatmap": _get(
        "Battles by weekday and hour.",
        [*_PERIOD, *_SERVER,
         _param("tz", {"type": "string", "default": "Europe/Moscow"}, "IANA time zone of the hours and weekdays."),
         _param("pvp", _BOOLEAN, "Only PvP battles (true) or only others (false).")],
        "Heatmap", "A 7 x 24 table.",
    ),
    "/api/locations": _get(
        "Battles per world location, busiest first.", [*_PAGE, *_PERIOD, *_SERVER], "Locations",
        "A page of locations.",
    ),
    "/api/locations/pvp-hotspots": _get(
        "Locations with the most PvP battles.",
        [*_PAGE, *_PERIOD, *_SERVER,
         _param("min_battles", {"type": "integer", "minimum": 1, "default": 5}, "Fewest PvP battles.")],
        "Hotspots", "A page of locations.",
    ),
    "/api/economy/resources": _get(
        "Items picked up, per battle day (or in total) and resource.",
        [*_PAGE, *_DAY_PERIOD, *_LOCATION,
         _param("name", {"type": "string"}, "One item name."),
         _param("category", {"type": "string", "enum": ["resource", "monster_part", "other"]}, "One category."),
         _param("group", {"type": "string", "enum": ["day", "total"], "default": "day"},
                "Rows per day and item, or per item over the period.")],
        "Resources", "A page of rows.",
    ),
    "/api/economy/monsters": _get(
        "Statistics per monster kind, over whole UTC days.",
        [*_PAGE, *_DAY_PERIOD,
         _param("kind", {"type": "string"}, "One kind code."),
         _param("elite", _BOOLEAN, "Only elite (true) or only ordinary (false) monsters.")],
        "Monsters", "A page of monster kinds.",
    ),
    "/api/integrity/bots": _get(
        "Players whose daily bot-suspicion score reached min_score, highest first.",
        [*_PAGE, *_DAY_PERIOD,
         _param("min_score", {"type": "number", "minimum": 0, "maximum": 1, "default": 0.4}, "Lowest score.")],
        "BotCandidates", "A page of candidates.",
    ),
    "/api/integrity/quality": _get(
        "Data quality: files by outcome, quarantine reasons, flags, gaps in battle ids, the last ingestion.",
        [*_PERIOD, *_SERVER,
         _param("gaps", {"type": "integer", "minimum": 0, "maximum": 1000, "default": 20},
                "How many of the largest gaps to list.")],
        "DataQuality", "The report.",
    ),
}
