"""Every analytics route through the gateway, checked against the generator's truth."""

import gzip
from collections import Counter, defaultdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest


pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def players_of(battle: dict) -> list[dict]:
    return [unit for unit in battle["participants"] if not unit["is_monster"]]


def is_pvp(battle: dict) -> bool:
    return len({unit["side"] for unit in players_of(battle)}) >= 2


def newest_first(battles: list[dict]) -> list[int]:
    ordered = sorted(battles, key=lambda b: (b["battle"]["start"], b["battle"]["id"]), reverse=True)
    return [battle["battle"]["id"] for battle in ordered]


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["request_id"] == response.headers["X-Request-Id"]
    return body


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["error"] == code and body["message"]
    return body


def busiest_human(corpus) -> str:
    bots = {member["login"] for member in corpus.members if member["bot"]}
    counts = Counter(unit["login"] for battle in corpus.battles for unit in players_of(battle)
                     if unit["login"] not in bots)
    return counts.most_common(1)[0][0]


def the_bot(corpus) -> str:
    return next(member["login"] for member in corpus.members if member["bot"])


# Battles.


def test_search_pages_in_battle_time_order(api, corpus):
    expected = newest_first(corpus.battles)
    first = ok(api("/api/battles", limit=50))
    assert first["total"] == len(corpus.battles)
    assert first["has_more"] is True
    assert [item["battle_id"] for item in first["items"]] == expected[:50]
    last_page = (len(expected) - 1) // 50 + 1
    last = ok(api("/api/battles", limit=50, page=last_page))
    assert [item["battle_id"] for item in last["items"]] == expected[(last_page - 1) * 50:]
    assert last["has_more"] is False
    beyond = ok(api("/api/battles", limit=50, page=last_page + 1))
    assert beyond["items"] == [] and beyond["total"] == len(expected)


def test_search_filters(api, corpus):
    login = busiest_human(corpus)
    with_player = [b for b in corpus.battles if login in {u["login"] for u in players_of(b)}]
    body = ok(api("/api/battles", player=login, limit=100))
    assert body["total"] == len(with_player)
    assert [item["battle_id"] for item in body["items"]] == newest_first(with_player)[:100]
    assert all(login in item["player_logins"] for item in body["items"])

    clan = next(m["clan"] for m in corpus.members if m["clan"] and not m["bot"])
    with_clan = [b for b in corpus.battles if any(b["roster"][u["login"]]["clan"] == clan for u in players_of(b))]
    assert ok(api("/api/battles", clan=clan))["total"] == len(with_clan)

    with_scorpions = [b for b in corpus.battles
                      if any(b["roster"][u["login"]]["monster_kind"] == "scr" for u in b["participants"])]
    body = ok(api("/api/battles", monster="scr", limit=100))
    assert body["total"] == len(with_scorpions) > 0
    assert all(item["monster_kinds"].get("scr", 0) > 0 for item in body["items"])

    pvp = [b for b in corpus.battles if is_pvp(b)]
    assert ok(api("/api/battles", pvp="true"))["total"] == len(pvp) > 0
    assert ok(api("/api/battles", pvp="false"))["total"] == len(corpus.battles) - len(pvp)

    middle = sorted(b["battle"]["start"] for b in corpus.battles)[len(corpus.battles) // 2]
    later = [b for b in corpus.battles if b["battle"]["start"] >= middle]
    assert ok(api("/api/battles", since=middle.isoformat()))["total"] == len(later)
    assert ok(api("/api/battles", until=middle.isoformat()))["total"] == len(corpus.battles) - len(later)

    place = corpus.battles[10]["battle"]
    here = [b for b in corpus.battles if (b["battle"]["x"], b["battle"]["y"]) == (place["x"], place["y"])]
    assert ok(api("/api/battles", x=place["x"], y=place["y"]))["total"] == len(here)
    both = [b for b in with_player if is_pvp(b)]
    assert ok(api("/api/battles", player=login, pvp="true"))["total"] == len(both)
    assert ok(api("/api/battles", server="other"))["total"] == 0


def test_one_battle(api, corpus):
    battle = next(b for b in corpus.battles if b["loot"] and is_pvp(b))
    header = battle["battle"]
    body = ok(api(f"/api/battles/{header['id']}"))
    assert body["battle_id"] == header["id"] and body["server"] == "main"
    assert body["start"] == header["start"].isoformat() and body["end"] == header["end"].isoformat()
    assert (body["x"], body["y"], body["turns"], body["type"]) == (header["x"], header["y"], header["turns"],
                                                                  header["type"])
    assert body["pvp"] is True
    units = {unit["login"]: unit for unit in body["participants"]}
    assert set(units) == {unit["login"] for unit in battle["participants"]}
    for unit in battle["participants"]:
        stored = units[unit["login"]]
        for key in ("side", "survived", "escaped", "kills_monsters", "kills_players", "damage_dealt",
                    "damage_taken", "healed"):
            assert stored[key] == unit[key], (unit["login"], key)
        assert stored["clan"] == battle["roster"][unit["login"]]["clan"]
    kills = sum(unit["kills_monsters"] + unit["kills_players"] for unit in battle["participants"])
    assert len([kill for kill in body["kills"] if kill["killer"] != kill["victim"]]) == kills
    # The truth leaves out pickups of ids that are not among the map objects.
    picked = Counter()
    for item in body["loot"]:
        if item["on_map"] is not False:
            picked[(item["login"], item["name"])] += item["qty"]
    assert picked == Counter({(item["login"], item["item"]): item["qty"] for item in battle["loot"]})
    dealt = sum(unit["damage_dealt"] for unit in battle["participants"])
    assert sum(row["damage"] for row in body["damage_per_turn"]) == dealt
    assert {row["turn"] for row in body["damage_per_turn"]} <= set(range(0, header["turns"] + 1))


def test_raw_log_is_the_stored_file(api, corpus):
    battle_id = corpus.battles[3]["battle"]["id"]
    response = api(f"/api/battles/{battle_id}/raw")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    archived = list(corpus.archive.rglob(f"{battle_id}.tzb.gz"))
    assert len(archived) == 1
    assert response.content == gzip.decompress(archived[0].read_bytes())
    assert response.headers["X-Request-Id"]


def test_unknown_battle(api, corpus):
    body = error(api(f"/api/battles/{corpus.missing[0]}"), 404, "battle_not_found")
    assert body["message"] == "Бой не найден."
    error(api(f"/api/battles/{corpus.missing[0]}/raw"), 404, "battle_not_found")
    english = error(api("/api/battles/1", headers={"Accept-Language": "en"}), 404, "battle_not_found")
    assert english["message"] == "No such battle."
    assert error(api("/api/battles/abc"), 400, "validation_error")["fields"]["battle_id"]
    assert error(api("/api/battles/0"), 400, "validation_error")["fields"]["battle_id"]


# Players.


def expected_profile(corpus, login: str) -> dict:
    units = [(b, u) for b in corpus.battles for u in players_of(b) if u["login"] == login]
    starts = [b["battle"]["start"] for b, _ in units]
    return {
        "battles": len(units),
        "pvp_battles": sum(is_pvp(b) for b, _ in units),
        "survived": sum(u["survived"] for _, u in units),
        "escapes": sum(u["escaped"] for _, u in units),
        "kills_monsters": sum(u["kills_monsters"] for _, u in units),
        "kills_players": sum(u["kills_players"] for _, u in units),
        "damage_dealt": sum(u["damage_dealt"] for _, u in units),
        "damage_taken": sum(u["damage_taken"] for _, u in units),
        "healed": sum(u["healed"] for _, u in units),
        "loot": sum(item["qty"] for b, _ in units for item in b["loot"] if item["login"] == login),
        "first_seen": min(starts).isoformat(),
        "last_seen": max(starts).isoformat(),
        "clans": sorted({b["roster"][login]["clan"] for b, _ in units} - {None}),
        "professions": sorted({b["roster"][login]["profession"] for b, _ in units}),
    }


@pytest.mark.parametrize("who", ["human", "bot"])
def test_player_profile(api, corpus, who):
    login = busiest_human(corpus) if who == "human" else the_bot(corpus)
    expected = expected_profile(corpus, login)
    body = ok(api(f"/api/players/{login}"))
    assert body["login"] == login
    for key in ("battles", "pvp_battles", "survived", "escapes", "healed", "first_seen", "last_seen", "clans",
                "professions"):
        assert body[key] == expected[key], key
    assert body["deaths"] == expected["battles"] - expected["survived"]
    assert body["kills"]["monsters"] == expected["kills_monsters"]
    assert body["kills"]["players"] == expected["kills_players"]
    assert sum(body["kills"]["by_kind"].values()) == expected["kills_monsters"] + expected["kills_players"]
    assert body["kills"]["by_kind"].get("player", 0) == expected["kills_players"]
    for side in ("dealt", "taken"):
        assert body["damage"][side]["total"] == expected[f"damage_{side}"]
        assert sum(body["damage"][side]["by_hit_kind"].values()) == expected[f"damage_{side}"]
    assert body["loot"]["total_qty"] == expected["loot"]
    assert body["survival_rate"] == pytest.approx(expected["survived"] / expected["battles"])
    if who == "bot":
        assert body["pvp_battles"] == 0 and body["survival_rate"] >= 0.98


def test_player_profile_in_a_period(api, corpus):
    login = busiest_human(corpus)
    starts = sorted(b["battle"]["start"] for b in corpus.battles if login in {u["login"] for u in players_of(b)})
    since, until = starts[2], starts[-3]
    body = ok(api(f"/api/players/{login}", since=since.isoformat(), until=until.isoformat()))
    assert body["battles"] == len([start for start in starts if since <= start < until])
    empty = ok(api(f"/api/players/{login}", since="2030-01-01"))
    assert empty["battles"] == 0 and empty["survival_rate"] is None


def test_unknown_player(api):
    error(api("/api/players/Nobody At All"), 404, "player_not_found")
    error(api("/api/players/Nobody At All/allies"), 404, "player_not_found")


def test_top_players(api, corpus):
    counts = Counter(u["login"] for b in corpus.battles for u in players_of(b))
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    body = ok(api("/api/players/top", metric="battles", min_battles=1, limit=5))
    assert [(item["login"], item["value"]) for item in body["items"]] == expected[:5]
    assert body["total"] == len(counts) and body["metric"] == "battles"
    assert body["items"][0]["login"] == the_bot(corpus)
    assert [item["rank"] for item in body["items"]] == [1, 2, 3, 4, 5]

    kills = Counter()
    for battle in corpus.battles:
        for unit in players_of(battle):
            kills[unit["login"]] += unit["kills_players"]
    top = ok(api("/api/players/top", metric="kills_players", min_battles=1, limit=1))["items"][0]
    assert top["value"] == max(kills.values())
    strict = ok(api("/api/players/top", min_battles=10_000))
    assert strict["total"] == 0 and strict["items"] == []


def test_allies_and_rivals(api, corpus):
    login = max(
        {u["login"] for b in corpus.battles if is_pvp(b) for u in players_of(b)},
        key=lambda name: (sum(1 for b in corpus.battles if is_pvp(b) and name in {u["login"] for u in players_of(b)}),
                          name),
    )
    allies, rivals = Counter(), Counter()
    for battle in corpus.battles:
        mine = [u for u in players_of(battle) if u["login"] == login]
        if not mine:
            continue
        for unit in players_of(battle):
            if unit["login"] == login:
                continue
            (allies if unit["side"] == mine[0]["side"] else rivals)[unit["login"]] += 1
    for route, expected in (("allies", allies), ("rivals", rivals)):
        body = ok(api(f"/api/players/{login}/{route}", limit=100))
        assert body["total"] == len(expected)
        assert {item["login"]: item["battles"] for item in body["items"]} == dict(expected)
        counts = [item["battles"] for item in body["items"]]
        assert counts == sorted(counts, reverse=True)
    rival = ok(api(f"/api/players/{login}/rivals", limit=1))["items"][0]
    assert {"kills", "killed_by"} <= set(rival)


# Clans.


def clan_battles(corpus, clan: str) -> list[tuple[dict, dict]]:
    return [(b, u) for b in corpus.battles for u in players_of(b) if b["roster"][u["login"]]["clan"] == clan]


def test_clan_profile(api, corpus):
    clans = Counter(b["roster"][u["login"]]["clan"] for b in corpus.battles for u in players_of(b))
    clans.pop(None, None)
    clan = clans.most_common(1)[0][0]
    units = clan_battles(corpus, clan)
    body = ok(api(f"/api/clans/{clan}", members=3))
    assert body["clan"] == clan
    assert body["members"] == len({u["login"] for _, u in units})
    assert body["battles"] == len({b["battle"]["id"] for b, _ in units})
    assert body["participations"] == len(units)
    assert body["survival_rate"] == pytest.approx(sum(u["survived"] for _, u in units) / len(units))
    assert body["kills_players"] == sum(u["kills_players"] for _, u in units)
    assert len(body["top_members"]) == min(3, body["members"])
    error(api("/api/clans/No Such Clan"), 404, "clan_not_found")


def test_clan_wars(api, corpus):
    pairs = defaultdict(set)
    for battle in corpus.battles:
        sides = {(u["side"], battle["roster"][u["login"]]["clan"]) for u in players_of(battle)}
        for side_a, clan_a in sides:
            for side_b, clan_b in sides:
                if clan_a and clan_b and side_a != side_b and clan_a < clan_b:
                    pairs[(clan_a, clan_b)].add(battle["battle"]["id"])
    body = ok(api("/api/clans/wars", limit=100))
    assert body["total"] == len(pairs) > 0
    assert {(item["clan_a"], item["clan_b"]): item["battles"] for item in body["items"]} == {
        pair: len(ids) for pair, ids in pairs.items()}
    clan = body["items"][0]["clan_a"]
    only = ok(api("/api/clans/wars", clan=clan, limit=100))
    assert only["total"] == len([pair for pair in pairs if clan in pair])


# Time and map.


@pytest.mark.parametrize("zone", [None, "UTC", "Asia/Vladivostok"])
def test_activity_heatmap(api, corpus, zone):
    params = {"tz": zone} if zone else {}
    body = ok(api("/api/activity/heatmap", **params))
    tz = ZoneInfo(zone or "Europe/Moscow")
    expected = [[0] * 24 for _ in range(7)]
    for battle in corpus.battles:
        local = battle["battle"]["start"].astimezone(tz)
        expected[local.weekday()][local.hour] += 1
    assert body["cells"] == expected
    assert body["timezone"] == (zone or "Europe/Moscow")
    assert body["weekdays"][0] == "mon" and body["total"] == len(corpus.battles)


def test_locations_and_hotspots(api, corpus):
    places = Counter((b["battle"]["x"], b["battle"]["y"]) for b in corpus.battles)
    body = ok(api("/api/locations", limit=100))
    assert body["total"] == len(places)
    top = body["items"][0]
    assert top["battles"] == max(places.values()) == places[(top["x"], top["y"])]

    pvp_places = Counter((b["battle"]["x"], b["battle"]["y"]) for b in corpus.battles if is_pvp(b))
    hotspots = ok(api("/api/locations/pvp-hotspots", min_battles=1, limit=100))
    assert hotspots["total"] == len(pvp_places)
    assert {(item["x"], item["y"]): item["pvp_battles"] for item in hotspots["items"]} == dict(pvp_places)
    assert all(0 < item["pvp_share"] <= 1 for item in hotspots["items"])


# Economy.


def test_resources(api, corpus):
    per_item = Counter()
    per_day = Counter()
    for battle in corpus.battles:
        for item in battle["loot"]:
            per_item[item["item"]] += item["qty"]
            per_day[(battle["battle"]["start"].date().isoformat(), item["item"])] += item["qty"]
    body = ok(api("/api/economy/resources", group="total", limit=100))
    assert {item["name"]: item["qty"] for item in body["items"]} == dict(per_item)
    daily = ok(api("/api/economy/resources", limit=100))
    assert daily["total"] == len(per_day)
    for item in daily["items"]:
        assert item["qty"] == per_day[(item["day"], item["name"])]
    name = per_item.most_common(1)[0][0]
    one = ok(api("/api/economy/resources", name=name, group="total"))
    assert [item["qty"] for item in one["items"]] == [per_item[name]]


def test_monster_statistics(api, corpus):
    units = Counter()
    killed = Counter()
    battles = defaultdict(set)
    for battle in corpus.battles:
        for unit in battle["participants"]:
            if unit["is_monster"]:
                roster = battle["roster"][unit["login"]]
                key = (roster["monster_kind"], roster["elite"])
                units[key] += 1
                killed[key] += not unit["survived"]
                battles[key].add(battle["battle"]["id"])
    body = ok(api("/api/economy/monsters", limit=100))
    assert body["total"] == len(units)
    for item in body["items"]:
        key = (item["kind"], item["elite"])
        assert (item["monsters"], item["killed"]) == (units[key], killed[key]), key
        assert item["battles"] == len(battles[key]), key
    rats = ok(api("/api/economy/monsters", kind="rat", elite="false"))
    assert [item["monsters"] for item in rats["items"]] == [units[("rat", False)]]


# Integrity.


def test_bot_candidates(api, corpus):
    body = ok(api("/api/integrity/bots"))
    assert body["items"], "the generated bot scored below the default min_score"
    top = body["items"][0]
    assert top["login"] == the_bot(corpus)
    assert top["score"] >= 0.6 and top["reasons"]
    assert top["idle_median_seconds"] < 10
    humans = {member["login"] for member in corpus.members if not member["bot"]}
    assert not humans & {item["login"] for item in body["items"]}
    strict = ok(api("/api/integrity/bots", min_score=0.99))
    assert all(item["score"] >= 0.99 for item in strict["items"]) and strict["total"] <= body["total"]


def test_data_quality(api, corpus):
    body = ok(api("/api/integrity/quality"))
    assert body["battles"] == len(corpus.battles)
    assert body["files"]["loaded"] == len(corpus.battles)
    assert body["files"]["quarantined"] == 1 and sum(body["quarantined_by_reason"].values()) == 1
    missing = corpus.missing
    assert body["gaps"]["missing_ids"] == len(missing)
    assert [(gap["first"], gap["last"]) for gap in body["gaps"]["largest"]] == [
        (missing[0], missing[2]), (missing[3], missing[3])]
    assert body["last_battle_id"] < corpus.broken_id
    duplicated = sum("duplicated_log" in b["battle"]["flags"] for b in corpus.battles)
    assert body["flags"].get("duplicated_log", 0) == duplicated
    assert body["last_ingestion"]["status"] == "completed_with_errors"
    assert body["collection"] == {}


def test_data_quality_shows_what_collection_knows(api, corpus):
    missing = corpus.missing
    rows = [(missing[0], "not_found", None), (missing[1], "not_found", None), (missing[3], "failed", "timeout")]
    with psycopg.connect(corpus.dsn, autocommit=True) as connection:
        for battle_id, status, reason in rows:
            connection.execute(
                "INSERT INTO collect_battles (server, battle_id, status, reason, attempts) VALUES ('main', %s, %s, %s, 1)",
                (battle_id, status, reason),
            )
        try:
            body = ok(api("/api/integrity/quality"))
            other = ok(api("/api/integrity/quality", server="other"))
        finally:
            connection.execute("DELETE FROM collect_battles")
    assert body["collection"] == {"not_found": 2, "failed": 1}
    assert [gap["collection"] for gap in body["gaps"]["largest"]] == [{"not_found": 2}, {"failed": 1}]
    assert other["collection"] == {} and other["gaps"]["largest"] == []


# Errors and guards.


def test_bad_parameters_are_named(api):
    body = error(api("/api/battles", limit="500", pvp="maybe", colour="red"), 400, "validation_error")
    assert set(body["fields"]) == {"limit", "pvp", "colour"}
    assert body["fields"]["limit"] == "Допустимы значения от 1 до 100."
    english = error(api("/api/players/top", metric="wins", headers={"Accept-Language": "en"}), 400,
                    "validation_error")
    assert english["fields"]["metric"].startswith("Allowed values: battles,")
    error(api("/api/activity/heatmap", tz="Mars/Base"), 400, "validation_error")
    error(api("/api/battles", since="2025-10-02", until="2025-10-01"), 400, "validation_error")
    repeated = api("/api/battles?player=A&player=B")
    assert error(repeated, 400, "validation_error")["fields"] == {"player": "Параметр указан больше одного раза."}


def test_api_key_required(api):
    error(api("/api/battles", key=None), 401, "invalid_api_key")
    error(api("/api/players/top", key="wrong-key"), 401, "invalid_api_key")


def test_answers_are_times_in_utc(api):
    item = ok(api("/api/battles", limit=1))["items"][0]
    moment = datetime.fromisoformat(item["start"])
    assert moment.utcoffset() == timezone.utc.utcoffset(None)
