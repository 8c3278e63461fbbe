"""The analytics marts, filled by ingesting small hand-made logs.

Every expected value below is worked out by hand from the logs that the
test writes; times are seconds after DAY0 (2025-10-09 00:00 UTC).
"""

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from pipelines.battlelogs import marts
from pipelines.battlelogs.ingest import IngestSettings
from pipelines.battlelogs.runner import run_ingest


pytestmark = pytest.mark.postgres

DAY0 = 1_759_968_000  # 2025-10-09 00:00:00 UTC
HOUR = 3600
MINUTE = 60
D0, D1, D2 = date(2025, 10, 9), date(2025, 10, 10), date(2025, 10, 11)

MART_TABLES = (
    "mart_player_daily",
    "mart_clan_daily",
    "mart_resource_daily",
    "mart_monster_daily",
    "mart_player_sessions",
    "mart_bot_suspicion",
)


# Log builders


@dataclass
class Unit:
    """A roster entry of a hand-made log."""

    login: str
    side: int
    level: int = 10
    clan: str | None = None
    spec: str | None = None     # def="...": an elite monster's marker


def hit(target: str, amount: int) -> str:
    return f'<a sf="1" t="5" type="0" login="{target}" HP="0:{amount}"/>'


def kill(victim: str) -> str:
    return f'<a sf="1" t="20" code="7" login="{victim}"/>'


def pick(item_id: int, name: str | None, count: int) -> str:
    text = f' txt="{name}"' if name else ""
    return f'<a sf="2" t="8" id="{item_id}"{text} count="{count}"/>'


def heal_self(amount: int) -> str:
    return f'<a sf="3" t="5" type="13" HP="0:-{amount}"/>'


def escape() -> str:
    return '<a sf="4" t="9"/>'


def acts(login: str, *actions: str, dies: bool = False) -> str:
    """One unit's block in a turn; ``dies`` marks it dead (HP 0 and a death action)."""
    if dies:
        return f'<USER login="{login}" HP="0">{"".join(actions)}<a sf="5" t="7"/></USER>'
    return f'<USER login="{login}">{"".join(actions)}</USER>'


def battle_log(
    battle_id: int,
    start: int | None,
    end: int,
    roster: list[Unit],
    turns: list[list[str]],
    objects: list[tuple[int, str | None, int]] = (),
    x: int = 12,
    y: int = -7,
) -> str:
    """Build a log; ``start`` and ``end`` are seconds after DAY0, ``turns`` hold ``acts`` blocks."""
    note = f' note="{x},{y},{DAY0 + start}"' if start is not None else ""
    users = []
    for unit in roster:
        clan = f' clan="{unit.clan}"' if unit.clan else ""
        spec = f' def="{unit.spec}"' if unit.spec else ""
        users.append(
            f'<USER login="{unit.login}" battleid="{battle_id}" level="{unit.level}"'
            f' side="{unit.side}"{clan}{spec} HP="100" maxHP="100"/>'
        )
    items = []
    for item_id, name, count in objects:
        text = f' txt="{name}"' if name else ""
        items.append(f'<O id="{item_id}"{text} count="{count}" bx="1" by="1"/>')
    body = "".join(
        f'<TURN turn="{number}">{"".join(blocks)}</TURN>'
        for number, blocks in enumerate(turns, start=1)
    )
    return (
        f'<BLOOK><BATTLE t="40" t2="{DAY0 + end}" turn="{len(turns)}" f="B"{note}>'
        f'{"".join(users)}{"".join(items)}</BATTLE>{body}</BLOOK>'
    )


def rat_fight(battle_id: int, login: str, start: int, end: int, survives: bool = True) -> str:
    """A player against one rat: the player kills it, or dies to it."""
    roster = [Unit(login, 1, 20), Unit("$rat900", 2, 5)]
    if survives:
        turn = [acts(login, hit("$rat900", 30), kill("$rat900")), acts("$rat900", dies=True)]
    else:
        turn = [acts("$rat900", hit(login, 100)), acts(login, dies=True)]
    return battle_log(battle_id, start, end, roster, [turn])


def write_logs(folder: Path, logs: dict[int, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for battle_id, text in logs.items():
        (folder / f"{battle_id}.tzb").write_text(text, encoding="utf-8")
    return folder


def ingest(pg_dsn: str, tmp_path: Path, folder: Path) -> None:
    settings = IngestSettings(
        dsn=pg_dsn, archive_root=tmp_path / "archive", quarantine_root=tmp_path / "q",
    )
    result = run_ingest([folder], settings, workers=1)
    assert result.status == "succeeded", result.summary


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(DAY0 + seconds, timezone.utc)


def fetch_one(pg, sql: str, params=()) -> dict | None:
    cursor = pg.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([column.name for column in cursor.description], row))


def marts_snapshot(pg) -> dict:
    """Every mart's rows in a stable order, floats rounded against summation order."""
    snapshot = {}
    for table in MART_TABLES:
        cursor = pg.execute(f"SELECT * FROM {table}")
        rows = [
            tuple(round(value, 9) if isinstance(value, float) else value for value in row)
            for row in cursor.fetchall()
        ]
        snapshot[table] = sorted(rows, key=repr)
    return snapshot


# The shared data set: three players and two clans over two days.


def campaign_logs() -> dict[int, str]:
    ola = Unit("Ola", 1, 12, "North Wind")
    return {
        # 08:00-08:02, PvE at (12, -7): Ola kills two rats, an elite stich
        # survives. Ola picks up Organic from the map and Gems that the map
        # does not list (an unmatched pickup, not counted).
        101: battle_log(
            101, 8 * HOUR, 8 * HOUR + 2 * MINUTE,
            [ola, Unit("$rat1", 2, 14), Unit("$rat2", 2, 15), Unit("$stich88_2", 2, 16, spec="3")],
            [
                [acts("Ola", hit("$rat1", 35), kill("$rat1")), acts("$rat1", dies=True),
                 acts("$rat2", hit("Ola", 18))],
                [acts("Ola", hit("$rat2", 40), kill("$rat2"), pick(7701, "Organic", 6),
                      pick(9999, "Gems", 2), heal_self(30)),
                 acts("$rat2", dies=True), acts("$stich88_2", hit("Ola", 22))],
            ],
            objects=[(7701, "Organic", 6)],
        ),
        # 09:00-09:03, PvP: Bob (clan Iron) kills Ola.
        102: battle_log(
            102, 9 * HOUR, 9 * HOUR + 3 * MINUTE,
            [ola, Unit("Bob", 2, 20, "Iron")],
            [[acts("Ola", hit("Bob", 25)), acts("Bob", hit("Ola", 100), kill("Ola")),
              acts("Ola", dies=True)]],
        ),
        # 10:00-10:02 at (3, 4), PvP and PvE: Ola (now in clan South Wind)
        # and Cid on side 1, Bob on side 2, a rat on side 3. The rat kills
        # Cid. Ola kills the rat, picks up Metals and escapes. Bob picks up
        # Organic.
        103: battle_log(
            103, 10 * HOUR, 10 * HOUR + 2 * MINUTE,
            [Unit("Ola", 1, 13, "South Wind"), Unit("Cid", 1, 8, "North Wind"),
             Unit("Bob", 2, 20, "Iron"), Unit("$rat3", 3, 10)],
            [[acts("$rat3", hit("Cid", 50)), acts("Cid", dies=True),
              acts("Ola", hit("$rat3", 20), kill("$rat3"), pick(7702, "Metals", 3), escape()),
              acts("$rat3", dies=True), acts("Bob", pick(7703, "Organic", 4))]],
            objects=[(7702, "Metals", 3), (7703, "Organic", 4)],
            x=3, y=4,
        ),
        # Day 1, 00:10-00:12: Ola alone against a rat, Organic at (12, -7).
        201: battle_log(
            201, 24 * HOUR + 10 * MINUTE, 24 * HOUR + 12 * MINUTE,
            [ola, Unit("$rat4", 2, 9)],
            [[acts("Ola", hit("$rat4", 30), kill("$rat4"), pick(7704, "Organic", 5)),
              acts("$rat4", dies=True)]],
            objects=[(7704, "Organic", 5)],
        ),
    }


@pytest.fixture
def campaign(pg, pg_dsn, tmp_path):
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "campaign", campaign_logs()))
    return pg


def test_player_day_totals(campaign):
    row = fetch_one(campaign, "SELECT * FROM mart_player_daily WHERE day = %s AND login = 'Ola'", (D0,))
    assert row["battles"] == 3
    assert row["pvp_battles"] == 2
    assert row["pve_battles"] == 2
    assert row["survived"] == 2
    assert row["deaths"] == 1
    assert row["escapes"] == 1
    assert row["kills_monsters"] == 3
    assert row["kills_players"] == 0
    assert row["damage_dealt"] == 35 + 40 + 25 + 20
    assert row["damage_taken"] == 18 + 22 + 100
    assert row["healed"] == 30
    assert row["turns"] == 2 + 1 + 1
    # Organic 6 and Metals 3; the unmatched Gems pickup is left out.
    assert row["loot_qty"] == 9
    assert row["first_battle_at"] == at(8 * HOUR)
    assert row["last_battle_at"] == at(10 * HOUR + 2 * MINUTE)
    assert row["max_level"] == 13
    assert row["clan"] == "South Wind"
    assert row["survival_rate"] == pytest.approx(2 / 3)
    assert row["kills_per_battle"] == pytest.approx(1.0)
    assert row["kills_per_turn"] == pytest.approx(3 / 4)


def test_player_days_separate(campaign):
    rows = campaign.execute("SELECT day, battles, loot_qty, clan FROM mart_player_daily WHERE login = 'Ola' ORDER BY day").fetchall()
    assert rows == [(D0, 3, 9, "South Wind"), (D1, 1, 5, "North Wind")]
    bob = fetch_one(campaign, "SELECT * FROM mart_player_daily WHERE day = %s AND login = 'Bob'", (D0,))
    assert bob["battles"] == 2
    assert bob["pvp_battles"] == 2
    assert bob["pve_battles"] == 1
    assert bob["kills_players"] == 1
    assert bob["loot_qty"] == 4
    monsters = campaign.execute("SELECT count(*) FROM mart_player_daily WHERE starts_with(login, '$')").fetchone()[0]
    assert monsters == 0


def test_clan_day_totals(campaign):
    north = fetch_one(campaign, "SELECT * FROM mart_clan_daily WHERE day = %s AND clan = 'North Wind'", (D0,))
    # Ola in battles 101 and 102, Cid in battle 103.
    assert north["members"] == 2
    assert north["battles"] == 3
    assert north["participations"] == 3
    assert north["survived"] == 1
    assert north["kills_monsters"] == 2
    assert north["kills_players"] == 0
    assert north["damage_dealt"] == 35 + 40 + 25
    assert north["damage_taken"] == 18 + 22 + 100 + 50
    assert north["survival_rate"] == pytest.approx(1 / 3)
    assert north["battles_per_member"] == pytest.approx(1.5)

    iron = fetch_one(campaign, "SELECT * FROM mart_clan_daily WHERE day = %s AND clan = 'Iron'", (D0,))
    assert iron["members"] == 1
    assert iron["battles"] == 2
    assert iron["kills_players"] == 1
    assert iron["survival_rate"] == pytest.approx(1.0)
    assert iron["battles_per_member"] == pytest.approx(2.0)

    clans = campaign.execute("SELECT day, clan FROM mart_clan_daily ORDER BY day, clan").fetchall()
    assert clans == [(D0, "Iron"), (D0, "North Wind"), (D0, "South Wind"), (D1, "North Wind")]


def test_resource_inflow_by_location(campaign):
    rows = campaign.execute(
        "SELECT day, name, category, x, y, qty, pickups, battles, players FROM mart_resource_daily"
        " ORDER BY day, x, name"
    ).fetchall()
    assert rows == [
        (D0, "Metals", "resource", 3, 4, 3, 1, 1, 1),
        (D0, "Organic", "resource", 3, 4, 4, 1, 1, 1),
        (D0, "Organic", "resource", 12, -7, 6, 1, 1, 1),
        (D1, "Organic", "resource", 12, -7, 5, 1, 1, 1),
    ]
    gems = campaign.execute("SELECT count(*) FROM mart_resource_daily WHERE name = 'Gems'").fetchone()[0]
    assert gems == 0


def test_resource_late_log_counts_on_battle_day(campaign, pg_dsn, tmp_path):
    # Loaded after day 1's battle, but fought on day 0: the inflow goes to day 0.
    late = battle_log(
        104, 11 * HOUR, 11 * HOUR + 2 * MINUTE,
        [Unit("Dan", 1, 10), Unit("$rat5", 2, 5)],
        [[acts("Dan", pick(7705, "Organic", 7))]],
        objects=[(7705, "Organic", 7)],
    )
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "late", {104: late}))
    rows = campaign.execute(
        "SELECT day, qty, pickups, battles, players FROM mart_resource_daily"
        " WHERE name = 'Organic' AND x = 12 AND y = -7 ORDER BY day"
    ).fetchall()
    assert rows == [(D0, 6 + 7, 2, 2, 2), (D1, 5, 1, 1, 1)]


def test_resource_null_keys_merge(pg, pg_dsn, tmp_path):
    # No note: no location and no start (the day comes from the end time).
    # The map object has no name either, so name, x and y are all NULL.
    logs = {
        battle_id: battle_log(
            battle_id, None, 5 * HOUR + battle_id,
            [Unit("Eve", 1, 10), Unit("$rat6", 2, 5)],
            [[acts("Eve", pick(8000 + battle_id, None, 2))]],
            objects=[(8000 + battle_id, None, 2)],
        )
        for battle_id in (301, 302)
    }
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "nameless", logs))
    rows = pg.execute("SELECT day, name, category, x, y, qty, pickups, battles FROM mart_resource_daily").fetchall()
    assert rows == [(D0, None, "other", None, None, 4, 2, 2)]


def test_monster_stats_by_kind(campaign):
    rat = fetch_one(
        campaign, "SELECT * FROM mart_monster_daily WHERE day = %s AND monster_kind = 'rat' AND NOT elite", (D0,),
    )
    assert rat["battles"] == 2
    assert rat["monsters"] == 3
    assert rat["killed"] == 3
    assert rat["min_level"] == 10
    assert rat["max_level"] == 15
    assert rat["avg_level"] == pytest.approx(13.0)
    assert rat["damage_dealt"] == 18 + 50
    assert rat["damage_taken"] == 35 + 40 + 20
    # Ola in battle 101; Ola, Cid and Bob in battle 103, where Cid died.
    assert rat["players_faced"] == 4
    assert rat["player_deaths"] == 1
    assert rat["player_survival_rate"] == pytest.approx(0.75)

    stich = fetch_one(
        campaign, "SELECT * FROM mart_monster_daily WHERE day = %s AND monster_kind = 'sti' AND elite", (D0,),
    )
    assert stich["battles"] == 1
    assert stich["monsters"] == 1
    assert stich["killed"] == 0
    assert stich["avg_level"] == pytest.approx(16.0)
    assert stich["damage_dealt"] == 22
    assert stich["players_faced"] == 1
    assert stich["player_deaths"] == 0

    keys = campaign.execute("SELECT day, monster_kind, elite FROM mart_monster_daily ORDER BY 1, 2, 3").fetchall()
    assert keys == [(D0, "rat", False), (D0, "sti", True), (D1, "rat", False)]


def test_battle_monsters_view(campaign):
    rows = campaign.execute(
        "SELECT monster_kind, elite, elite_spec, units, min_level, max_level FROM battle_monsters m"
        " JOIN battles b ON b.id = m.battle WHERE b.battle_id = 101 ORDER BY monster_kind"
    ).fetchall()
    assert rows == [("rat", False, None, 2, 14, 15), ("sti", True, "3", 1, 16, 16)]


# Sessions: Sam's battles as (battle id, start, end) in seconds after DAY0.

SAM_BATTLES = [
    # The first session, on day 0: idles of 8 and 28 minutes keep it together.
    (401, 12 * HOUR, 12 * HOUR + 2 * MINUTE),
    (402, 12 * HOUR + 10 * MINUTE, 12 * HOUR + 12 * MINUTE),
    (403, 12 * HOUR + 40 * MINUTE, 12 * HOUR + 43 * MINUTE),
    # The second: 37 minutes of idle split it off, but exactly 30 minutes does not.
    (404, 13 * HOUR + 20 * MINUTE, 13 * HOUR + 22 * MINUTE),
    (405, 13 * HOUR + 52 * MINUTE, 13 * HOUR + 54 * MINUTE),
    # The third: battle 407 starts a minute before battle 406 ends (an
    # overlap), and battle 408 starts 5 s after battle 407 ends.
    (406, 15 * HOUR, 15 * HOUR + 5 * MINUTE),
    (407, 15 * HOUR + 4 * MINUTE, 15 * HOUR + 6 * MINUTE),
    (408, 15 * HOUR + 6 * MINUTE + 5, 15 * HOUR + 8 * MINUTE),
    # The fourth runs over midnight, with 13 and then 3 minutes of idle.
    (409, 23 * HOUR + 50 * MINUTE, 23 * HOUR + 52 * MINUTE),
    (501, 24 * HOUR + 5 * MINUTE, 24 * HOUR + 7 * MINUTE),
    (502, 24 * HOUR + 10 * MINUTE, 24 * HOUR + 12 * MINUTE),
    (503, 24 * HOUR + 15 * MINUTE, 24 * HOUR + 17 * MINUTE),
    (504, 24 * HOUR + 20 * MINUTE, 24 * HOUR + 22 * MINUTE),
    (505, 24 * HOUR + 25 * MINUTE, 24 * HOUR + 27 * MINUTE),
]


def sam_logs(day: int | None = None) -> dict[int, str]:
    """Sam's logs, all or only those that start on ``day`` (0 or 1)."""
    return {
        battle_id: rat_fight(battle_id, "Sam", start, end)
        for battle_id, start, end in SAM_BATTLES
        if day is None or start // (24 * HOUR) == day
    }


def sam_sessions(pg) -> list[tuple]:
    return pg.execute(
        "SELECT started_at, ended_at, day, battles, playtime_seconds, idle_seconds, overlapping_battles"
        " FROM mart_player_sessions WHERE login = 'Sam' ORDER BY started_at"
    ).fetchall()


EXPECTED_SAM_SESSIONS = [
    (at(12 * HOUR), at(12 * HOUR + 43 * MINUTE), D0, 3, 43 * MINUTE, (8 + 28) * MINUTE, 0),
    (at(13 * HOUR + 20 * MINUTE), at(13 * HOUR + 54 * MINUTE), D0, 2, 34 * MINUTE, 30 * MINUTE, 0),
    # The overlap adds no idle: only the 5 s before battle 408 count.
    (at(15 * HOUR), at(15 * HOUR + 8 * MINUTE), D0, 3, 8 * MINUTE, 5, 1),
    (at(23 * HOUR + 50 * MINUTE), at(24 * HOUR + 27 * MINUTE), D0, 6, 37 * MINUTE, (13 + 4 * 3) * MINUTE, 0),
]


def test_sessions_split_at_idle(pg, pg_dsn, tmp_path):
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "sam", sam_logs()))
    sessions = sam_sessions(pg)
    assert len(sessions) == 4
    for actual, expected in zip(sessions, EXPECTED_SAM_SESSIONS):
        assert actual == expected


def test_sessions_joined_across_runs(pg, pg_dsn, tmp_path):
    # Day 1 first, then day 0: the second run must merge the midnight session.
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "day1", sam_logs(1)))
    assert sam_sessions(pg)[0][:4] == (at(24 * HOUR + 5 * MINUTE), at(24 * HOUR + 27 * MINUTE), D1, 5)
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "day0", sam_logs(0)))
    assert sam_sessions(pg) == EXPECTED_SAM_SESSIONS


def test_session_ignores_defective_end(pg, pg_dsn, tmp_path):
    # An end 10 hours after the start is a log defect: the battle counts as
    # lasting 0 s, so it neither makes a 10-hour session nor joins battle 802.
    logs = {
        801: rat_fight(801, "Tia", 12 * HOUR, 22 * HOUR),
        802: rat_fight(802, "Tia", 12 * HOUR + 40 * MINUTE, 12 * HOUR + 42 * MINUTE),
    }
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "tia", logs))
    sessions = pg.execute(
        "SELECT started_at, ended_at, battles FROM mart_player_sessions WHERE login = 'Tia' ORDER BY started_at"
    ).fetchall()
    assert sessions == [
        (at(12 * HOUR), at(12 * HOUR), 1),
        (at(12 * HOUR + 40 * MINUTE), at(12 * HOUR + 42 * MINUTE), 1),
    ]


def test_overlap_not_short_idle(pg, pg_dsn, tmp_path):
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "sam", sam_logs()))
    day0 = fetch_one(pg, "SELECT * FROM mart_bot_suspicion WHERE day = %s AND login = 'Sam'", (D0,))
    assert day0["battles"] == 9
    assert day0["active_hours"] == 4
    # In-session idles: 8 min, 28 min, 30 min and 5 s. The overlap before
    # battle 407 is neither an idle nor a short idle.
    assert day0["idles"] == 4
    assert day0["short_idle_share"] == pytest.approx(1 / 4)
    assert day0["idle_median_seconds"] == pytest.approx((8 + 28) * MINUTE / 2)
    assert day0["longest_session_hours"] == pytest.approx(43 / 60)

    # Day 1's first idle is measured from battle 409 on day 0.
    day1 = fetch_one(pg, "SELECT * FROM mart_bot_suspicion WHERE day = %s AND login = 'Sam'", (D1,))
    assert day1["battles"] == 5
    assert day1["idles"] == 5
    assert day1["idle_median_seconds"] == pytest.approx(3 * MINUTE)
    assert day1["longest_session_hours"] == pytest.approx(37 / 60)


# Bot suspicion: a farming script against a person on day 2.


def bot_logs() -> dict[int, str]:
    """200 battles of 200 s each from 06:00, with idles of 4, 5 and 6 s in turn."""
    logs = {}
    start = 48 * HOUR + 6 * HOUR
    for number in range(200):
        battle_id = 600_000 + number
        logs[battle_id] = rat_fight(battle_id, "Metronome", start, start + 200)
        start += 200 + 4 + number % 3
    return logs


HUMAN_IDLES = [60, 900, 120, 1500, 300, 90, 1200, 240, 600, 1800, 150, 480, 75]


def human_logs() -> dict[int, str]:
    """14 battles of 150 s with uneven idles of 1 to 30 minutes, one of them lost."""
    logs = {}
    start = 48 * HOUR + 9 * HOUR
    for number in range(len(HUMAN_IDLES) + 1):
        battle_id = 700_000 + number
        logs[battle_id] = rat_fight(battle_id, "Walker", start, start + 150, survives=number != 5)
        if number < len(HUMAN_IDLES):
            start += 150 + HUMAN_IDLES[number]
    return logs


@pytest.fixture
def day2_players(pg, pg_dsn, tmp_path):
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "day2", {**bot_logs(), **human_logs()}))
    return pg


def test_bot_scores_high(day2_players):
    bot = fetch_one(day2_players, "SELECT * FROM mart_bot_suspicion WHERE day = %s AND login = 'Metronome'", (D2,))
    assert bot["battles"] == 200
    assert bot["idles"] == 199
    assert bot["short_idle_share"] == pytest.approx(1.0)
    assert bot["idle_median_seconds"] == pytest.approx(5.0)
    assert bot["idle_cv"] < 0.2
    # 06:00 to about 17:23: twelve distinct hours, one session of 11.4 h.
    assert bot["active_hours"] == 12
    assert bot["longest_session_hours"] == pytest.approx((199 * 205 - 1 + 200) / 3600, abs=0.01)
    assert bot["survival_rate"] == pytest.approx(1.0)
    assert bot["score"] >= 0.75
    assert bot["reasons"] == ["regularity", "short_idles", "volume", "marathon", "flawless_farming"]


def test_human_scores_low(day2_players):
    human = fetch_one(day2_players, "SELECT * FROM mart_bot_suspicion WHERE day = %s AND login = 'Walker'", (D2,))
    assert human["battles"] == 14
    assert human["idles"] == 13
    assert human["short_idle_share"] == pytest.approx(0.0)
    assert human["idle_cv"] > 0.6
    assert human["survival_rate"] == pytest.approx(13 / 14)
    assert human["score"] < 0.2
    assert human["reasons"] == []


def test_bot_needs_five_battles(campaign):
    rows = campaign.execute("SELECT count(*) FROM mart_bot_suspicion").fetchone()[0]
    assert rows == 0


# Refresh by day range and re-ingestion


def test_range_refresh_matches_full_rebuild(pg, pg_dsn, tmp_path):
    # Load day by day, latest day first, then compare with a full rebuild.
    campaign = campaign_logs()
    by_day = [
        (2, human_logs()),
        (1, {201: campaign[201], **sam_logs(1)}),
        (0, {101: campaign[101], 102: campaign[102], 103: campaign[103], **sam_logs(0)}),
    ]
    for day, logs in by_day:
        ingest(pg_dsn, tmp_path, write_logs(tmp_path / f"day{day}", logs))
    incremental = marts_snapshot(pg)

    marts.refresh(pg, None)
    full = marts_snapshot(pg)
    for table in MART_TABLES:
        assert incremental[table] == full[table], table
    assert full["mart_player_sessions"]
    assert full["mart_bot_suspicion"]

    for days in ([D0], [D1], [D0, D1, D2]):
        marts.refresh(pg, days)
        again = marts_snapshot(pg)
        for table in MART_TABLES:
            assert again[table] == full[table], (days, table)


def test_changed_log_replaces_battle(campaign, pg_dsn, tmp_path):
    # Battle 101 again with other content: now on day 1 at 09:00, with
    # 8 Organic, and Ola dies to the stich.
    changed = battle_log(
        101, 33 * HOUR, 33 * HOUR + 2 * MINUTE,
        [Unit("Ola", 1, 12, "North Wind"), Unit("$stich88_2", 2, 16, spec="3")],
        [[acts("Ola", pick(7701, "Organic", 8)), acts("$stich88_2", hit("Ola", 100)),
          acts("Ola", dies=True)]],
        objects=[(7701, "Organic", 8)],
    )
    ingest(pg_dsn, tmp_path, write_logs(tmp_path / "changed", {101: changed}))

    ola = campaign.execute(
        "SELECT day, battles, deaths, loot_qty FROM mart_player_daily WHERE login = 'Ola' ORDER BY day"
    ).fetchall()
    assert ola == [(D0, 2, 1, 3), (D1, 2, 1, 5 + 8)]
    organic = campaign.execute(
        "SELECT day, qty FROM mart_resource_daily WHERE name = 'Organic' AND x = 12 ORDER BY day"
    ).fetchall()
    assert organic == [(D1, 5 + 8)]
    stich_days = campaign.execute(
        "SELECT day, player_deaths FROM mart_monster_daily WHERE monster_kind = 'sti'"
    ).fetchall()
    assert stich_days == [(D1, 1)]

    refreshed = marts_snapshot(campaign)
    marts.refresh(campaign, None)
    assert marts_snapshot(campaign) == refreshed
