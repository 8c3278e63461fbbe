"""SQL of the analytics API, over the battle tables and the marts.

Every function takes an open connection and parameters already checked by
:mod:`services.battles.params`, and returns JSON-ready values: times as ISO
8601 text in UTC, rates as floats. A battle's time is its start, or its end
when the start is missing; ``since`` is inclusive and ``until`` exclusive.
Queries over marts work on whole UTC days: the days from the one that holds
``since`` to the one that holds the moment before ``until``.
"""

import base64
import gzip
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from psycopg.rows import dict_row

from services.common.errors import (
    BattleNotFound,
    ClanNotFound,
    LogNotStored,
    PlayerNotFound,
    ValidationFailed,
)


BATTLE_TIME = "coalesce(b.started_at, b.ended_at)"
#: The largest log file that raw_log returns, uncompressed.
MAX_RAW_BYTES = 32 * 1024 * 1024
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Metrics of top_players: the SQL over a player's mart_player_daily rows.
TOP_METRICS = {
    "battles": "sum(battles)",
    "pvp_battles": "sum(pvp_battles)",
    "survival_rate": "sum(survived)::float8 / sum(battles)",
    "kills": "sum(kills_monsters + kills_players)",
    "kills_monsters": "sum(kills_monsters)",
    "kills_players": "sum(kills_players)",
    "kills_per_battle": "sum(kills_monsters + kills_players)::float8 / sum(battles)",
    "damage_dealt": "sum(damage_dealt)",
    "damage_taken": "sum(damage_taken)",
    "healed": "sum(healed)",
    "loot": "sum(loot_qty)",
    "escapes": "sum(escapes)",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _day_bounds(params: dict) -> tuple:
    """Return the first and last UTC day that the period touches (None when open)."""
    since, until = params.get("since"), params.get("until")
    first = since.date() if since is not None else None
    last = (until - timedelta(microseconds=1)).date() if until is not None else None
    return first, last


def _page(params: dict) -> tuple[int, int]:
    limit = params["limit"]
    return limit, (params["page"] - 1) * limit


def _paged(items: list, total: int, params: dict) -> dict:
    limit, offset = _page(params)
    return {
        "items": items,
        "total": total,
        "page": params["page"],
        "limit": limit,
        "has_more": offset + len(items) < total,
    }


class _Where:
    """Collects AND-ed SQL conditions and their named parameters."""

    def __init__(self):
        self.parts: list[str] = []
        self.values: dict = {}

    def add(self, condition: str, **values) -> None:
        self.parts.append(condition)
        self.values.update(values)

    def period(self, params: dict, expression: str = BATTLE_TIME) -> None:
        if params.get("since") is not None:
            self.add(f"{expression} >= %(since)s", since=params["since"])
        if params.get("until") is not None:
            self.add(f"{expression} < %(until)s", until=params["until"])

    def days(self, params: dict, column: str = "day") -> None:
        first, last = _day_bounds(params)
        if first is not None:
            self.add(f"{column} >= %(day_first)s", day_first=first)
        if last is not None:
            self.add(f"{column} <= %(day_last)s", day_last=last)

    def server(self, params: dict, column: str = "b.server") -> None:
        if params.get("server") is not None:
            self.add(f"{column} = %(server)s", server=params["server"])

    def location(self, params: dict, prefix: str = "b.") -> None:
        for axis in ("x", "y"):
            if params.get(axis) is not None:
                self.add(f"{prefix}{axis} = %({axis})s", **{axis: params[axis]})

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "TRUE"


def _server_only(params: dict, column: str) -> str:
    return f"{column} = %(server)s" if params.get("server") is not None else "TRUE"


def _rows(connection, query: str, values: dict | None = None) -> list[dict]:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, values or {})
        return cursor.fetchall()


def _row(connection, query: str, values: dict | None = None) -> dict | None:
    rows = _rows(connection, query, values)
    return rows[0] if rows else None


# ---------------------------------------------------------------------------
# Battles.


def _battle_summary(row: dict) -> dict:
    return {
        "server": row["server"],
        "battle_id": row["battle_id"],
        "start": _iso(row["started_at"]),
        "end": _iso(row["ended_at"]),
        "turns": row["turns"],
        "type": row["type"],
        "x": row["x"],
        "y": row["y"],
        "players": row["players"],
        "monsters": row["monsters"],
        "pvp": row["player_sides"] is not None and row["player_sides"] >= 2,
        "flags": row["flags"],
    }


_BATTLE_COLUMNS = (
    "b.id, b.server, b.battle_id, b.started_at, b.ended_at, b.turns, b.type, b.x, b.y,"
    " b.players, b.monsters, b.player_sides, b.flags"
)


def search_battles(connection, params: dict) -> dict:
    where = _Where()
    where.server(params)
    where.period(params)
    where.location(params)
    if params.get("type") is not None:
        where.add("b.type = %(type)s", type=params["type"])
    if params.get("pvp") is not None:
        where.add("(b.player_sides >= 2) = %(pvp)s", pvp=params["pvp"])
    for name, condition in (
        ("player", "p.login = %(player)s AND NOT p.is_monster"),
        ("clan", "p.clan = %(clan)s AND NOT p.is_monster"),
        ("monster", "p.monster_kind = %(monster)s"),
    ):
        if params.get(name) is not None:
            where.add(
                f"EXISTS (SELECT 1 FROM participants p WHERE p.battle = b.id AND {condition})",
                **{name: params[name]},
            )
    limit, offset = _page(params)
    total = _row(connection, f"SELECT count(*) AS n FROM battles b WHERE {where.sql()}", where.values)["n"]
    rows = _rows(
        connection,
        f"SELECT {_BATTLE_COLUMNS},"
        " (SELECT coalesce(array_agg(p.login ORDER BY p.pid), '{}') FROM participants p"
        "   WHERE p.battle = b.id AND NOT p.is_monster) AS player_logins,"
        " (SELECT coalesce(jsonb_object_agg(kinds.kind, kinds.units), '{}') FROM ("
        "   SELECT coalesce(p.monster_kind, 'unknown') AS kind, count(*) AS units FROM participants p"
        "   WHERE p.battle = b.id AND p.is_monster GROUP BY 1) AS kinds) AS monster_kinds"
        f" FROM battles b WHERE {where.sql()}"
        f" ORDER BY {BATTLE_TIME} DESC, b.battle_id DESC LIMIT %(limit)s OFFSET %(offset)s",
        {**where.values, "limit": limit, "offset": offset},
    )
    items = []
    for row in rows:
        item = _battle_summary(row)
        item["player_logins"] = row["player_logins"]
        item["monster_kinds"] = row["monster_kinds"]
        items.append(item)
    return _paged(items, total, params)


def _find_battle(connection, battle_id: int, server: str | None) -> dict:
    where = _Where()
    where.add("b.battle_id = %(battle_id)s", battle_id=battle_id)
    where.server({"server": server})
    rows = _rows(
        connection,
        f"SELECT {_BATTLE_COLUMNS}, b.turns_seen, b.turn_seconds, b.map_hash, b.events, b.copies,"
        " b.unknown_markup, b.bad_values, b.sha256, b.size, b.source_path, b.archive_path, b.loaded_at"
        f" FROM battles b WHERE {where.sql()} ORDER BY b.server LIMIT 2",
        where.values,
    )
    if not rows:
        raise BattleNotFound(f"battle {battle_id} is not loaded")
    if len(rows) > 1:
        raise ValidationFailed(f"battle {battle_id} exists on several servers", fields={"server": "param.ambiguous"})
    return rows[0]


def get_battle(connection, battle_id: int, params: dict) -> dict:
    battle = _find_battle(connection, battle_id, params.get("server"))
    key = {"id": battle["id"]}
    participants = _rows(
        connection,
        "SELECT pid, login, is_monster, in_roster, side, level, clan, profession, creature_type,"
        " rank_points::float8 AS rank_points, pve_points, max_hp, monster_kind, elite, elite_spec,"
        " survived, died_turn, escaped, escaped_turn, joined_turn, kills_monsters, kills_players,"
        " damage_dealt, damage_taken, healed"
        " FROM participants WHERE battle = %(id)s ORDER BY pid",
        key,
    )
    logins = {row["pid"]: row["login"] for row in participants}
    kills = _rows(
        connection,
        "SELECT turn, frame, killer, victim FROM kills WHERE battle = %(id)s ORDER BY seq",
        key,
    )
    loot = _rows(
        connection,
        "SELECT pid, item_id, template, name, category, qty, turn, on_map FROM loot"
        " WHERE battle = %(id)s ORDER BY turn NULLS LAST, pid, item_id",
        key,
    )
    # Positive hit amounts and heals per turn and side of the acting unit.
    damage = _rows(
        connection,
        "SELECT e.turn, u.side, count(*) AS attacks,"
        " coalesce(sum(e.amount) FILTER (WHERE e.amount > 0 AND e.target IS NOT NULL), 0) AS damage,"
        " coalesce(sum(e.heal) FILTER (WHERE e.heal > 0 AND e.target IS NOT NULL), 0) AS heal"
        " FROM events e JOIN participants u ON u.battle = e.battle AND u.pid = e.actor"
        " WHERE e.battle = %(id)s AND e.action = 5"
        " GROUP BY e.turn, u.side ORDER BY e.turn, u.side NULLS LAST",
        key,
    )
    result = _battle_summary(battle)
    result.update({
        "turns_seen": battle["turns_seen"],
        "turn_seconds": battle["turn_seconds"],
        "map_hash": battle["map_hash"],
        "events": battle["events"],
        "copies": battle["copies"],
        "unknown_markup": battle["unknown_markup"],
        "bad_values": battle["bad_values"],
        "sha256": battle["sha256"],
        "size": battle["size"],
        "loaded_at": _iso(battle["loaded_at"]),
        "participants": participants,
        "kills": [
            {"turn": row["turn"], "frame": row["frame"], "killer": logins.get(row["killer"]),
             "victim": logins.get(row["victim"])}
            for row in kills
        ],
        "loot": [
            {"login": logins.get(row.pop("pid")), **row} for row in loot
        ],
        "damage_per_turn": damage,
    })
    return result


def raw_log(connection, battle_id: int, params: dict) -> dict:
    battle = _find_battle(connection, battle_id, params.get("server"))
    for name in ("archive_path", "source_path"):
        path = battle[name]
        if not path:
            continue
        path = Path(path)
        try:
            with (gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")) as handle:
                data = handle.read(MAX_RAW_BYTES + 1)
        except (OSError, EOFError):
            continue
        if len(data) > MAX_RAW_BYTES:
            raise LogNotStored(f"the log of battle {battle_id} is larger than {MAX_RAW_BYTES} bytes")
        return {
            "server": battle["server"],
            "battle_id": battle["battle_id"],
            "sha256": battle["sha256"],
            "content_base64": base64.b64encode(data).decode("ascii"),
        }
    raise LogNotStored(f"no readable file for battle {battle_id}")


# ---------------------------------------------------------------------------
# Players.


def _player_scope(login: str, params: dict) -> _Where:
    where = _Where()
    where.add("p.login = %(login)s AND NOT p.is_monster", login=login)
    where.server(params)
    where.period(params)
    return where


def _player_exists(connection, login: str) -> bool:
    return _row(
        connection,
        "SELECT EXISTS (SELECT 1 FROM participants WHERE login = %(login)s AND NOT is_monster) AS found",
        {"login": login},
    )["found"]


def _combat(totals: dict) -> dict:
    """Turn flat combat keys into the profile's nested shape."""
    result = {
        "dealt": {"by_hit_kind": {}, "effects": {}},
        "taken": {"by_hit_kind": {}, "effects": {}},
        "heals_given": 0,
        "kills_by_kind": {},
    }
    for key, value in totals.items():
        group, _, name = key.partition(".")
        if group in ("dealt", "taken"):
            result[group]["by_hit_kind"][name] = value
        elif group == "effect_dealt":
            result["dealt"]["effects"][name] = value
        elif group == "effect_taken":
            result["taken"]["effects"][name] = value
        elif group == "heals_given":
            result["heals_given"] = value
        elif group == "kills":
            result["kills_by_kind"][name] = value
    return result


def player_profile(connection, login: str, params: dict) -> dict:
    where = _player_scope(login, params)
    summary = _row(
        connection,
        "SELECT count(*) AS battles,"
        " count(*) FILTER (WHERE b.player_sides >= 2) AS pvp_battles,"
        " count(*) FILTER (WHERE b.monsters > 0) AS pve_battles,"
        " count(*) FILTER (WHERE p.survived) AS survived,"
        " count(*) FILTER (WHERE NOT p.survived) AS deaths,"
        " count(*) FILTER (WHERE p.escaped) AS escapes,"
        " coalesce(sum(p.kills_monsters), 0) AS kills_monsters,"
        " coalesce(sum(p.kills_players), 0) AS kills_players,"
        " coalesce(sum(p.damage_dealt), 0) AS damage_dealt,"
        " coalesce(sum(p.damage_taken), 0) AS damage_taken,"
        " coalesce(sum(p.healed), 0) AS healed,"
        f" min({BATTLE_TIME}) AS first_seen, max({BATTLE_TIME}) AS last_seen,"
        " min(p.level) AS min_level, max(p.level) AS max_level,"
        " coalesce(array_agg(DISTINCT p.profession) FILTER (WHERE p.profession IS NOT NULL), '{}') AS professions,"
        " coalesce(array_agg(DISTINCT p.clan) FILTER (WHERE p.clan IS NOT NULL), '{}') AS clans,"
        " coalesce(array_agg(DISTINCT b.server), '{}') AS servers"
        f" FROM participants p JOIN battles b ON b.id = p.battle WHERE {where.sql()}",
        where.values,
    )
    if summary["battles"] == 0 and not _player_exists(connection, login):
        raise PlayerNotFound(f"no battle of {login!r} is loaded")
    latest = _row(
        connection,
        "SELECT p.clan, p.level FROM participants p JOIN battles b ON b.id = p.battle"
        f" WHERE {where.sql()} ORDER BY {BATTLE_TIME} DESC, b.battle_id DESC LIMIT 1",
        where.values,
    )
    totals = {
        row["key"]: int(row["total"])
        for row in _rows(
            connection,
            "SELECT c.key, sum(c.value::bigint) AS total"
            " FROM participants p JOIN battles b ON b.id = p.battle"
            " CROSS JOIN LATERAL jsonb_each_text(p.combat) AS c"
            f" WHERE {where.sql()} GROUP BY c.key",
            where.values,
        )
    }
    loot = _rows(
        connection,
        "SELECT l.name, l.category, sum(l.qty)::bigint AS qty, count(DISTINCT l.battle) AS battles"
        " FROM participants p JOIN battles b ON b.id = p.battle"
        " JOIN loot l ON l.battle = p.battle AND l.pid = p.pid"
        # As in the marts: a pickup whose id is not among the map objects
        # cannot be tied to an item that entered the game here.
        f" WHERE {where.sql()} AND l.on_map IS NOT FALSE"
        " GROUP BY l.name, l.category ORDER BY qty DESC, l.name NULLS LAST",
        where.values,
    )
    battles = summary["battles"]
    return {
        "login": login,
        "battles": battles,
        "pvp_battles": summary["pvp_battles"],
        "pve_battles": summary["pve_battles"],
        "survived": summary["survived"],
        "deaths": summary["deaths"],
        "escapes": summary["escapes"],
        "survival_rate": summary["survived"] / battles if battles else None,
        "kills": {
            "monsters": summary["kills_monsters"],
            "players": summary["kills_players"],
            "by_kind": _combat(totals)["kills_by_kind"],
        },
        "damage": {
            "dealt": {"total": summary["damage_dealt"], **_combat(totals)["dealt"]},
            "taken": {"total": summary["damage_taken"], **_combat(totals)["taken"]},
        },
        "healed": summary["healed"],
        "heals_given": _combat(totals)["heals_given"],
        "loot": {
            "total_qty": sum(row["qty"] for row in loot),
            "items": loot,
        },
        "professions": sorted(summary["professions"]),
        "clans": sorted(summary["clans"]),
        "clan": latest["clan"] if latest else None,
        "level": {"min": summary["min_level"], "max": summary["max_level"],
                  "latest": latest["level"] if latest else None},
        "servers": sorted(summary["servers"]),
        "first_seen": _iso(summary["first_seen"]),
        "last_seen": _iso(summary["last_seen"]),
    }


def top_players(connection, params: dict) -> dict:
    where = _Where()
    where.days(params)
    metric = TOP_METRICS[params["metric"]]
    limit, offset = _page(params)
    values = {**where.values, "min_battles": params["min_battles"], "limit": limit, "offset": offset}
    grouped = (
        f"SELECT login, {metric} AS value, sum(battles) AS battles,"
        " sum(survived)::float8 / sum(battles) AS survival_rate,"
        " sum(kills_monsters + kills_players) AS kills, max(last_battle_at) AS last_seen"
        f" FROM mart_player_daily WHERE {where.sql()}"
        " GROUP BY login HAVING sum(battles) >= %(min_battles)s"
    )
    total = _row(connection, f"SELECT count(*) AS n FROM ({grouped}) AS ranked", values)["n"]
    rows = _rows(
        connection,
        f"SELECT * FROM ({grouped}) AS ranked ORDER BY value DESC NULLS LAST, login"
        " LIMIT %(limit)s OFFSET %(offset)s",
        values,
    )
    items = [
        {
            "rank": offset + index + 1,
            "login": row["login"],
            "value": float(row["value"]) if isinstance(row["value"], float) else int(row["value"]),
            "battles": int(row["battles"]),
            "survival_rate": row["survival_rate"],
            "kills": int(row["kills"]),
            "last_seen": _iso(row["last_seen"]),
        }
        for index, row in enumerate(rows)
    ]
    result = _paged(items, total, params)
    result["metric"] = params["metric"]
    return result


def player_relations(connection, login: str, params: dict, allies: bool) -> dict:
    """Players met on the same side (allies) or on another side (rivals), most battles first."""
    where = _player_scope(login, params)
    same_side = "q.side IS NOT DISTINCT FROM m.side" if allies else "q.side IS DISTINCT FROM m.side"
    limit, offset = _page(params)
    values = {**where.values, "limit": limit, "offset": offset}
    mine = (
        f"SELECT p.battle, p.pid, p.side, {BATTLE_TIME} AS at"
        f" FROM participants p JOIN battles b ON b.id = p.battle WHERE {where.sql()}"
    )
    met = (
        f"SELECT q.login, m.battle, m.pid AS my_pid, q.pid AS their_pid, q.survived, q.clan, m.at"
        f" FROM ({mine}) AS m JOIN participants q ON q.battle = m.battle"
        f" AND NOT q.is_monster AND q.pid <> m.pid AND q.login <> %(login)s AND {same_side}"
    )
    total = _row(connection, f"SELECT count(DISTINCT login) AS n FROM ({met}) AS met", values)["n"]
    if total == 0 and not _player_exists(connection, login):
        raise PlayerNotFound(f"no battle of {login!r} is loaded")
    rows = _rows(
        connection,
        f"WITH met AS MATERIALIZED ({met}),"
        " page AS ("
        "  SELECT login, count(*) AS battles, count(*) FILTER (WHERE survived) AS their_survived,"
        "  max(at) AS last_battle, (array_agg(clan ORDER BY at DESC))[1] AS clan"
        "  FROM met GROUP BY login ORDER BY battles DESC, login LIMIT %(limit)s OFFSET %(offset)s)"
        " SELECT page.*,"
        " (SELECT count(*) FROM met JOIN kills k ON k.battle = met.battle"
        "   AND k.killer = met.my_pid AND k.victim = met.their_pid WHERE met.login = page.login) AS kills,"
        " (SELECT count(*) FROM met JOIN kills k ON k.battle = met.battle"
        "   AND k.killer = met.their_pid AND k.victim = met.my_pid WHERE met.login = page.login) AS killed_by"
        " FROM page ORDER BY battles DESC, login",
        values,
    )
    items = []
    for row in rows:
        item = {
            "login": row["login"],
            "clan": row["clan"],
            "battles": row["battles"],
            "last_battle": _iso(row["last_battle"]),
        }
        if not allies:
            item.update({"kills": row["kills"], "killed_by": row["killed_by"]})
        items.append(item)
    return _paged(items, total, params)


# ---------------------------------------------------------------------------
# Clans.


def clan_profile(connection, name: str, params: dict) -> dict:
    where = _Where()
    where.add("p.clan = %(clan)s AND NOT p.is_monster", clan=name)
    where.server(params)
    where.period(params)
    summary = _row(
        connection,
        "SELECT count(DISTINCT p.login) AS members, count(DISTINCT p.battle) AS battles,"
        " count(*) AS participations, count(*) FILTER (WHERE p.survived) AS survived,"
        " count(DISTINCT p.battle) FILTER (WHERE b.player_sides >= 2) AS pvp_battles,"
        " coalesce(sum(p.kills_monsters), 0) AS kills_monsters,"
        " coalesce(sum(p.kills_players), 0) AS kills_players,"
        " coalesce(sum(p.damage_dealt), 0) AS damage_dealt,"
        " coalesce(sum(p.damage_taken), 0) AS damage_taken,"
        f" min({BATTLE_TIME}) AS first_seen, max({BATTLE_TIME}) AS last_seen"
        f" FROM participants p JOIN battles b ON b.id = p.battle WHERE {where.sql()}",
        where.values,
    )
    if summary["participations"] == 0:
        found = _row(
            connection,
            "SELECT EXISTS (SELECT 1 FROM participants WHERE clan = %(clan)s AND NOT is_monster) AS found",
            {"clan": name},
        )["found"]
        if not found:
            raise ClanNotFound(f"no battle of clan {name!r} is loaded")
    members = _rows(
        connection,
        "SELECT p.login, count(*) AS battles, count(*) FILTER (WHERE p.survived) AS survived,"
        " sum(p.kills_monsters + p.kills_players) AS kills, max(p.level) AS level,"
        f" max({BATTLE_TIME}) AS last_seen"
        f" FROM participants p JOIN battles b ON b.id = p.battle WHERE {where.sql()}"
        " GROUP BY p.login ORDER BY battles DESC, p.login LIMIT %(members_limit)s",
        {**where.values, "members_limit": params["members"]},
    )
    participations = summary["participations"]
    wars = clan_wars(connection, {**params, "clan": name, "min_battles": 1, "page": 1, "limit": 10})
    return {
        "clan": name,
        "members": summary["members"],
        "battles": summary["battles"],
        "pvp_battles": summary["pvp_battles"],
        "participations": participations,
        "survival_rate": summary["survived"] / participations if participations else None,
        "kills_monsters": summary["kills_monsters"],
        "kills_players": summary["kills_players"],
        "damage_dealt": summary["damage_dealt"],
        "damage_taken": summary["damage_taken"],
        "first_seen": _iso(summary["first_seen"]),
        "last_seen": _iso(summary["last_seen"]),
        "top_members": [
            {**row, "kills": int(row["kills"] or 0), "last_seen": _iso(row["last_seen"])} for row in members
        ],
        "wars": wars["items"],
    }


def clan_wars(connection, params: dict) -> dict:
    """Pairs of clans that fought on opposite sides, with kills each way, from the clan-war mart (days)."""
    where = _Where()
    where.days(params)
    where.server(params, column="server")
    if params.get("clan") is not None:
        where.add("(clan_a = %(clan)s OR clan_b = %(clan)s)", clan=params["clan"])
    limit, offset = _page(params)
    values = {**where.values, "min_battles": params["min_battles"], "limit": limit, "offset": offset}
    pairs = (
        "SELECT clan_a, clan_b, sum(battles)::bigint AS battles, sum(kills_a)::bigint AS kills_a,"
        " sum(kills_b)::bigint AS kills_b, max(last_battle) AS last_battle"
        f" FROM mart_clan_war_daily WHERE {where.sql()} GROUP BY clan_a, clan_b"
        " HAVING sum(battles) >= %(min_battles)s"
    )
    # The page carries the total; only a page past the end needs a count of its own.
    rows = _rows(
        connection,
        f"SELECT *, count(*) OVER () AS total FROM ({pairs}) AS pairs"
        " ORDER BY battles DESC, clan_a, clan_b LIMIT %(limit)s OFFSET %(offset)s",
        values,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = _row(connection, f"SELECT count(*) AS n FROM ({pairs}) AS pairs", values)["n"]
    items = [
        {
            "clan_a": row["clan_a"],
            "clan_b": row["clan_b"],
            "battles": row["battles"],
            "kills_a": row["kills_a"],
            "kills_b": row["kills_b"],
            "last_battle": _iso(row["last_battle"]),
        }
        for row in rows
    ]
    return _paged(items, total, params)


# ---------------------------------------------------------------------------
# Time and map.


def activity_heatmap(connection, params: dict, default_timezone: str) -> dict:
    zone = params.get("tz") or default_timezone
    where = _Where()
    where.server(params)
    where.period(params)
    if params.get("pvp") is not None:
        where.add("(b.player_sides >= 2) = %(pvp)s", pvp=params["pvp"])
    rows = _rows(
        connection,
        f"SELECT extract(isodow FROM {BATTLE_TIME} AT TIME ZONE %(zone)s)::int - 1 AS weekday,"
        f" extract(hour FROM {BATTLE_TIME} AT TIME ZONE %(zone)s)::int AS hour, count(*) AS battles"
        f" FROM battles b WHERE {where.sql()} GROUP BY 1, 2",
        {**where.values, "zone": zone},
    )
    cells = [[0] * 24 for _ in WEEKDAYS]
    for row in rows:
        cells[row["weekday"]][row["hour"]] = row["battles"]
    return {
        "timezone": zone,
        "weekdays": list(WEEKDAYS),
        "cells": cells,
        "total": sum(map(sum, cells)),
    }


def locations(connection, params: dict) -> dict:
    where = _Where()
    where.add("b.x IS NOT NULL AND b.y IS NOT NULL")
    where.server(params)
    where.period(params)
    limit, offset = _page(params)
    grouped = (
        "SELECT b.x, b.y, count(*) AS battles, count(*) FILTER (WHERE b.player_sides >= 2) AS pvp_battles,"
        f" sum(b.players) AS players, sum(b.monsters) AS monsters, max({BATTLE_TIME}) AS last_battle"
        f" FROM battles b WHERE {where.sql()} GROUP BY b.x, b.y"
    )
    values = {**where.values, "limit": limit, "offset": offset}
    total = _row(connection, f"SELECT count(*) AS n FROM ({grouped}) AS places", values)["n"]
    rows = _rows(
        connection,
        f"SELECT * FROM ({grouped}) AS places ORDER BY battles DESC, x, y LIMIT %(limit)s OFFSET %(offset)s",
        values,
    )
    items = [{**row, "last_battle": _iso(row["last_battle"])} for row in rows]
    return _paged(items, total, params)


def pvp_hotspots(connection, params: dict) -> dict:
    where = _Where()
    where.add("b.x IS NOT NULL AND b.y IS NOT NULL")
    where.server(params)
    where.period(params)
    limit, offset = _page(params)
    values = {**where.values, "min_battles": params["min_battles"], "limit": limit, "offset": offset}
    grouped = (
        "SELECT b.x, b.y, count(*) AS battles, count(*) FILTER (WHERE b.player_sides >= 2) AS pvp_battles,"
        " count(*) FILTER (WHERE b.player_sides >= 2)::float8 / count(*) AS pvp_share,"
        f" max({BATTLE_TIME}) FILTER (WHERE b.player_sides >= 2) AS last_pvp"
        f" FROM battles b WHERE {where.sql()} GROUP BY b.x, b.y"
        " HAVING count(*) FILTER (WHERE b.player_sides >= 2) >= %(min_battles)s"
    )
    total = _row(connection, f"SELECT count(*) AS n FROM ({grouped}) AS places", values)["n"]
    rows = _rows(
        connection,
        f"WITH page AS (SELECT * FROM ({grouped}) AS places"
        " ORDER BY pvp_battles DESC, pvp_share DESC, x, y LIMIT %(limit)s OFFSET %(offset)s)"
        " SELECT page.*, (SELECT coalesce(sum(p.kills_players), 0) FROM battles b"
        "   JOIN participants p ON p.battle = b.id AND NOT p.is_monster"
        f"   WHERE {where.sql()} AND b.x = page.x AND b.y = page.y AND b.player_sides >= 2) AS player_kills"
        " FROM page ORDER BY pvp_battles DESC, pvp_share DESC, x, y",
        values,
    )
    items = [{**row, "last_pvp": _iso(row["last_pvp"])} for row in rows]
    return _paged(items, total, params)


# ---------------------------------------------------------------------------
# Economy.


def resources(connection, params: dict) -> dict:
    """Items picked up by battle day (or in total), per resource, optionally at one location."""
    where = _Where()
    where.days(params)
    where.location(params, prefix="")
    for name in ("name", "category"):
        if params.get(name) is not None:
            where.add(f"{name} = %({name})s", **{name: params[name]})
    by_day = params["group"] == "day"
    keys = "day, name, category" if by_day else "name, category"
    limit, offset = _page(params)
    values = {**where.values, "limit": limit, "offset": offset}
    grouped = (
        f"SELECT {keys}, sum(qty)::bigint AS qty, sum(pickups)::bigint AS pickups,"
        " sum(battles)::bigint AS battles"
        f" FROM mart_resource_daily WHERE {where.sql()} GROUP BY {keys}"
    )
    order = "day DESC, qty DESC, name NULLS LAST" if by_day else "qty DESC, name NULLS LAST"
    total = _row(connection, f"SELECT count(*) AS n FROM ({grouped}) AS rows", values)["n"]
    rows = _rows(connection, f"{grouped} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s", values)
    items = []
    for row in rows:
        item = dict(row)
        if by_day:
            item["day"] = row["day"].isoformat()
        item["qty_per_battle"] = row["qty"] / row["battles"] if row["battles"] else None
        items.append(item)
    result = _paged(items, total, params)
    result["group"] = params["group"]
    return result


def monsters(connection, params: dict) -> dict:
    where = _Where()
    where.days(params)
    if params.get("kind") is not None:
        where.add("d.monster_kind = %(kind)s", kind=params["kind"])
    if params.get("elite") is not None:
        where.add("d.elite = %(elite)s", elite=params["elite"])
    limit, offset = _page(params)
    values = {**where.values, "limit": limit, "offset": offset}
    grouped = (
        "SELECT d.monster_kind AS kind, k.name, d.elite, sum(d.battles)::bigint AS battles,"
        " sum(d.monsters)::bigint AS monsters, sum(d.killed)::bigint AS killed,"
        " min(d.min_level) AS min_level, max(d.max_level) AS max_level,"
        " sum(d.avg_level * d.monsters) / nullif(sum(d.monsters), 0) AS avg_level,"
        " sum(d.damage_dealt)::bigint AS damage_dealt, sum(d.damage_taken)::bigint AS damage_taken,"
        " sum(d.players_faced)::bigint AS players_faced, sum(d.player_deaths)::bigint AS player_deaths"
        " FROM mart_monster_daily d LEFT JOIN monster_kinds k ON k.code = d.monster_kind"
        f" WHERE {where.sql()} GROUP BY d.monster_kind, k.name, d.elite"
    )
    total = _row(connection, f"SELECT count(*) AS n FROM ({grouped}) AS kinds", values)["n"]
    rows = _rows(
        connection,
        f"{grouped} ORDER BY battles DESC, kind, elite LIMIT %(limit)s OFFSET %(offset)s",
        values,
    )
    items = []
    for row in rows:
        item = dict(row)
        item["avg_level"] = float(row["avg_level"]) if row["avg_level"] is not None else None
        item["kill_rate"] = row["killed"] / row["monsters"] if row["monsters"] else None
        faced = row["players_faced"]
        item["player_survival_rate"] = (faced - row["player_deaths"]) / faced if faced else None
        items.append(item)
    return _paged(items, total, params)


# ---------------------------------------------------------------------------
# Integrity.


def bot_candidates(connection, params: dict) -> dict:
    """Players whose best-scoring day reaches ``min_score``, highest score first."""
    where = _Where()
    where.days(params)
    limit, offset = _page(params)
    values = {**where.values, "min_score": params["min_score"], "limit": limit, "offset": offset}
    ranked = (
        "SELECT s.*, count(*) FILTER (WHERE s.score >= %(min_score)s) OVER (PARTITION BY s.login) AS flagged_days,"
        " count(*) OVER (PARTITION BY s.login) AS days,"
        " row_number() OVER (PARTITION BY s.login ORDER BY s.score DESC, s.day DESC) AS position"
        f" FROM mart_bot_suspicion s WHERE {where.sql()}"
    )
    best = f"SELECT * FROM ({ranked}) AS ranked WHERE position = 1 AND score >= %(min_score)s"
    total = _row(connection, f"SELECT count(*) AS n FROM ({best}) AS best", values)["n"]
    rows = _rows(
        connection,
        f"{best} ORDER BY score DESC, login LIMIT %(limit)s OFFSET %(offset)s",
        values,
    )
    items = [
        {
            "login": row["login"],
            "score": row["score"],
            "reasons": row["reasons"],
            "day": row["day"].isoformat(),
            "flagged_days": row["flagged_days"],
            "days": row["days"],
            "battles": row["battles"],
            "active_hours": row["active_hours"],
            "idles": row["idles"],
            "idle_median_seconds": row["idle_median_seconds"],
            "idle_cv": row["idle_cv"],
            "short_idle_share": row["short_idle_share"],
            "longest_session_hours": row["longest_session_hours"],
            "survival_rate": row["survival_rate"],
            "kills_per_battle": row["kills_per_battle"],
        }
        for row in rows
    ]
    return _paged(items, total, params)


def data_quality(connection, params: dict) -> dict:
    files = _Where()
    files.period(params, expression="f.recorded_at")
    outcomes = _rows(
        connection,
        "SELECT f.outcome, f.reason, count(*) AS files FROM ingest_files f"
        f" WHERE {files.sql()} GROUP BY f.outcome, f.reason",
        files.values,
    )
    by_outcome: dict = defaultdict(int)
    quarantined: dict = {}
    for row in outcomes:
        by_outcome[row["outcome"]] += row["files"]
        if row["outcome"] == "quarantined":
            quarantined[row["reason"] or "unknown"] = row["files"]

    battles = _Where()
    battles.server(params)
    battles.period(params)
    flags = _rows(
        connection,
        f"SELECT flag, count(*) AS battles FROM battles b, unnest(b.flags) AS flag WHERE {battles.sql()}"
        " GROUP BY flag ORDER BY battles DESC, flag",
        battles.values,
    )
    counts = _row(
        connection,
        "SELECT count(*) AS battles, min(b.battle_id) AS first_id, max(b.battle_id) AS last_id,"
        " count(DISTINCT b.server) AS servers"
        f" FROM battles b WHERE {battles.sql()}",
        battles.values,
    )
    # Gaps: runs of ids missing between two loaded battles of one server.
    gaps = _rows(
        connection,
        "WITH ordered AS ("
        " SELECT b.server, b.battle_id,"
        "  lead(b.battle_id) OVER (PARTITION BY b.server ORDER BY b.battle_id) AS next_id"
        f" FROM battles b WHERE {battles.sql()})"
        " SELECT server, battle_id + 1 AS first, next_id - 1 AS last, next_id - battle_id - 1 AS missing"
        " FROM ordered WHERE next_id > battle_id + 1",
        battles.values,
    )
    gaps.sort(key=lambda gap: (-gap["missing"], gap["server"], gap["first"]))
    largest = gaps[: params["gaps"]]
    # What collection knows of the ids in each listed gap: a battle that
    # does not exist is no loss, a failed fetch can be retried.
    if largest:
        known = _rows(
            connection,
            "SELECT g.position, c.status, count(*) AS ids"
            " FROM unnest(%(servers)s::text[], %(firsts)s::bigint[], %(lasts)s::bigint[])"
            "  WITH ORDINALITY AS g (server, first, last, position)"
            " JOIN collect_battles c ON c.server = g.server AND c.battle_id BETWEEN g.first AND g.last"
            " GROUP BY g.position, c.status",
            {"servers": [gap["server"] for gap in largest], "firsts": [gap["first"] for gap in largest],
             "lasts": [gap["last"] for gap in largest]},
        )
        for gap in largest:
            gap["collection"] = {}
        for row in known:
            largest[row["position"] - 1]["collection"][row["status"]] = row["ids"]
    collection = _rows(
        connection,
        f"SELECT c.status, count(*) AS ids FROM collect_battles c WHERE {_server_only(params, 'c.server')}"
        " GROUP BY c.status ORDER BY c.status",
        {"server": params.get("server")},
    )
    last_run = _row(
        connection,
        "SELECT id, trigger, status, started_at, finished_at, files, loaded, replaced, duplicates,"
        " quarantined, failed, seconds, error FROM ingest_runs ORDER BY id DESC LIMIT 1",
    )
    if last_run is not None:
        last_run["started_at"] = _iso(last_run["started_at"])
        last_run["finished_at"] = _iso(last_run["finished_at"])
    return {
        "files": {
            "loaded": by_outcome.get("loaded", 0),
            "replaced": by_outcome.get("replaced", 0),
            "duplicates": by_outcome.get("duplicate", 0),
            "failed": by_outcome.get("failed", 0),
            "quarantined": sum(quarantined.values()),
        },
        "quarantined_by_reason": quarantined,
        "battles": counts["battles"],
        "first_battle_id": counts["first_id"],
        "last_battle_id": counts["last_id"],
        "flags": {row["flag"]: row["battles"] for row in flags},
        "gaps": {
            "ranges": len(gaps),
            "missing_ids": sum(gap["missing"] for gap in gaps),
            "largest": largest,
        },
        "collection": {row["status"]: row["ids"] for row in collection},
        "last_ingestion": last_run,
    }
