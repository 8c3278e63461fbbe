"""Tests for corpora played by a population (pipelines.battlelogs.population).

Most tests read one dense corpus: 3,000 battles of 60 human players and a
bot, with human battles 120 s apart on average, which covers about two and
a half days. They work from its truth.jsonl and population.json, as the analytics
tests do. The last test loads a smaller corpus with tzr-ingest's
``run_ingest`` into the test database and reads ``mart_bot_suspicion``.
"""

import calendar
import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from pipelines.battlelogs.corpus import POPULATION_FILE, TRUTH_FILE, main, write_corpus
from pipelines.battlelogs.ingest import IngestSettings
from pipelines.battlelogs.population import (
    HUMAN_MAX_IDLE,
    HUMAN_MIN_IDLE,
    HUMAN_SESSION_BATTLES,
    Population,
    Schedule,
)
from pipelines.battlelogs.runner import run_ingest


DAY = 86_400
HOUR = 3600
# The session split of mart_player_sessions, mart_session_max_idle().
SESSION_MAX_IDLE = 1800
XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _unix(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


@dataclass
class Play:
    """One member's participation in one battle, from the truth."""

    battle_id: int
    start: int
    end: int
    kind: str
    side: int
    survived: bool
    roster: dict


@dataclass
class Corpus:
    directory: Path
    population: dict
    truths: list[dict]

    @property
    def members(self) -> dict[str, dict]:
        return {member["login"]: member for member in self.population["members"]}

    @property
    def bots(self) -> list[str]:
        return [login for login, member in self.members.items() if member["bot"]]

    @property
    def humans(self) -> list[str]:
        return [login for login, member in self.members.items() if not member["bot"]]

    def plays(self) -> dict[str, list[Play]]:
        """Return each player's battles in start order."""
        plays = defaultdict(list)
        for truth in self.truths:
            battle = truth["battle"]
            for participant in _players(truth):
                login = participant["login"]
                plays[login].append(Play(
                    battle["id"], _unix(battle["start"]), _unix(battle["end"]),
                    _kind(truth), participant["side"], participant["survived"],
                    truth["roster"][login],
                ))
        for battles in plays.values():
            battles.sort(key=lambda play: (play.start, play.battle_id))
        return plays


def _players(truth: dict) -> list[dict]:
    return [p for p in truth["participants"] if not p["is_monster"]]


def _kind(truth: dict) -> str:
    # A battle's kind as the analytics see it: monsters and players on one
    # side is PvE, players on two or more sides is PvP, both is mixed.
    monsters = any(p["is_monster"] for p in truth["participants"])
    sides = {p["side"] for p in _players(truth)}
    if len(sides) < 2:
        return "pve"
    return "mixed" if monsters else "pvp"


def _idles(plays: list[Play]) -> list[int]:
    # Seconds from each battle's end to the next battle's start.
    return [later.start - earlier.end for earlier, later in zip(plays, plays[1:])]


def _read_corpus(directory: Path) -> Corpus:
    population = json.loads((directory / POPULATION_FILE).read_text(encoding="utf-8"))
    lines = (directory / TRUTH_FILE).read_text(encoding="utf-8").splitlines()
    return Corpus(directory, population, [json.loads(line) for line in lines])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    directory = tmp_path_factory.mktemp("population")
    write_corpus(
        directory, 3000, seed=7, layout="flat", truth=True,
        players=60, bots=1, interval=120,
    )
    return _read_corpus(directory)


# Population ------------------------------------------------------------------


def test_population_same_seed_same_members():
    first = Population(3, 40, 2)
    second = Population(3, 40, 2)
    other = Population(4, 40, 2)
    assert first.to_json() == second.to_json()
    assert first.to_json()["members"] != other.to_json()["members"]


def test_population_counts_and_clans():
    population = Population(5, 400, 10)
    members = population.members
    logins = [member.login for member in members]
    assert len(members) == 410
    assert len(set(logins)) == 410
    assert [member.bot for member in members] == [False] * 400 + [True] * 10
    assert len(population.clans) == 50  # 400 / 8
    assert len(set(population.clans)) == 50

    sizes = Counter(member.clan for member in members)
    assert all(sizes[clan] >= 1 for clan in population.clans)
    assert 0.15 <= sizes[None] / len(members) <= 0.35
    for clan, rivals in population.rivals.items():
        assert rivals, clan
        assert clan not in rivals
        for rival in rivals:
            assert clan in population.rivals[rival]


def test_population_default_clans():
    assert len(Population(1, 1).clans) == 1
    assert len(Population(1, 10).clans) == 2
    assert len(Population(1, 800).clans) == 100
    assert len(Population(1, 30, clans=0).clans) == 0
    assert all(member.clan is None for member in Population(1, 30, clans=0).members)


def test_population_logins_keep_the_styles():
    logins = [member.login for member in Population(9, 2000).members]
    cyrillic = [
        login for login in logins if any("\u0400" <= char <= "\u04ff" for char in login)
    ]
    assert 0.10 <= len(cyrillic) / len(logins) <= 0.20
    for char in "&\"<'":
        assert any(char in login for login in logins), char
    assert not any(login.startswith("$") for login in logins)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"players": 0}, "players must be 1 or more, not 0"),
        ({"players": -3}, "players must be 1 or more"),
        ({"players": 5, "bots": -1}, "bots must be zero or more, not -1"),
        ({"players": 5, "clans": -1}, "clans must be between 0 and players"),
        ({"players": 5, "clans": 6}, r"between 0 and players \(5\), not 6"),
        ({"players": 5, "interval": 0}, "interval must be a positive number"),
        ({"players": 5, "interval": -60}, "interval must be a positive"),
        ({"players": 5, "interval": float("nan")}, "interval must be a positive"),
        ({"players": 5, "interval": float("inf")}, "interval must be a positive"),
        ({"bots": 2}, "need a population: pass players"),
        ({"clans": 2}, "need a population"),
        ({"interval": 60}, "need a population"),
    ],
)
def test_write_corpus_rejects_invalid_population(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_corpus(tmp_path / "out", 1, **arguments)
    assert not (tmp_path / "out").exists()


def test_population_rejects_bots_without_players():
    with pytest.raises(ValueError, match="players must be 1 or more"):
        Population(1, 0, 5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--players", "0"], "players must be 1 or more"),
        (["--players", "4", "--bots", "-1"], "bots must be zero or more"),
        (["--players", "4", "--clans", "9"], "clans must be between 0 and players"),
        (["--players", "4", "--interval", "0"], "interval must be a positive"),
        (["--bots", "1"], "need a population"),
        (["--players", "x"], "invalid int value"),
    ],
)
def test_main_rejects_invalid_population(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "out"), "--count", "2", *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_main_writes_population_corpus(tmp_path, capsys):
    arguments = [
        str(tmp_path), "--count", "30", "--layout", "flat", "--truth", "--seed", "2",
        "--players", "6", "--bots", "1", "--clans", "2", "--interval", "30",
    ]
    assert main(arguments) == 0
    assert capsys.readouterr().out.startswith("wrote 30 files")
    population = json.loads((tmp_path / POPULATION_FILE).read_text(encoding="utf-8"))
    assert population["players"] == 6
    assert population["bots"] == 1
    assert population["interval"] == 30
    assert len(population["clans"]) == 2
    assert len(population["members"]) == 7
    assert len((tmp_path / TRUTH_FILE).read_text().splitlines()) == 30


def test_population_corpus_is_deterministic(tmp_path):
    options = {"seed": 5, "layout": "flat", "truth": True, "players": 20, "bots": 1}
    first = write_corpus(tmp_path / "a", 60, **options)
    second = write_corpus(tmp_path / "b", 60, **options)
    other = write_corpus(tmp_path / "c", 60, **{**options, "interval": 30})
    for first_file, second_file in zip(first, second):
        assert first_file.path.read_bytes() == second_file.path.read_bytes()
    for name in (TRUTH_FILE, POPULATION_FILE):
        first_bytes = (tmp_path / "a" / name).read_bytes()
        assert first_bytes == (tmp_path / "b" / name).read_bytes(), name
    # The bytes also depend on the schedule options.
    first_truth = (tmp_path / "a" / TRUTH_FILE).read_bytes()
    assert first_truth != (tmp_path / "c" / TRUTH_FILE).read_bytes()


def test_schedule_scales_to_many_members():
    # Each cast costs heap operations, not a scan of the members, so 20,000
    # casts over 20,000 members take a fraction of a second (0.13 s measured
    # on a 2-core virtual machine).
    population = Population(1, 20_000, 200)
    schedule = Schedule(population, 1, 5, 1_759_276_800)
    began = time.perf_counter()
    for _ in range(20_000):
        cast = schedule.next_cast()
        cast.seat("pvp", [1, 2, 1, 2])
        schedule.finish(cast, "pvp", cast.start + 150, cast.members)
    assert time.perf_counter() - began < 5


# The dense corpus ---------------------------------------------------------------


def test_members_recur(corpus):
    plays = corpus.plays()
    members = corpus.members
    assert set(plays) <= set(members), "every player is a member"
    assert set(plays) == set(members), "every member plays"
    counts = sorted(len(battles) for battles in plays.values())
    assert counts[len(counts) // 10] >= 10, "nine in ten members play 10 battles or more"


def test_battle_ids_grow_with_start(corpus):
    starts = [
        (_unix(truth["battle"]["start"]), truth["battle"]["id"]) for truth in corpus.truths
    ]
    assert starts == sorted(starts)
    ids = [battle_id for _, battle_id in starts]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_member_battles_never_overlap(corpus):
    for login, plays in corpus.plays().items():
        for earlier, later in zip(plays, plays[1:]):
            where = (login, earlier.battle_id, later.battle_id)
            assert earlier.end < later.start, where


def test_member_identity_is_stable(corpus):
    members = corpus.members
    for login, plays in corpus.plays().items():
        member = members[login]
        for play in plays:
            where = (login, play.battle_id)
            assert play.roster["clan"] == member["clan"], where
            assert play.roster["profession"] == member["profession"], where
            assert play.roster["creature_type"] == member["man"], where


def test_member_progress_never_decreases(corpus):
    grew = Counter()
    for login, plays in corpus.plays().items():
        for key in ("level", "rank_points", "pve_points"):
            values = [play.roster[key] for play in plays]
            assert values == sorted(values), (login, key)
            grew[key] += values[-1] > values[0]
        levels = [play.roster["level"] for play in plays]
        assert levels[-1] - levels[0] <= 2 + len(plays) // 250, login
    assert grew["pve_points"] >= 50
    assert grew["rank_points"] >= 10


def test_bots_play_solo_pve(corpus):
    plays = corpus.plays()
    for bot in corpus.bots:
        for play in plays[bot]:
            assert play.kind == "pve", (bot, play.battle_id)
    bot_battles = {play.battle_id for bot in corpus.bots for play in plays[bot]}
    for truth in corpus.truths:
        if truth["battle"]["id"] in bot_battles:
            assert len(_players(truth)) == 1, truth["battle"]["id"]


def test_bots_keep_a_machine_rhythm(corpus):
    plays = corpus.plays()
    first_day = _unix(corpus.truths[0]["battle"]["start"]) // DAY
    for bot in corpus.bots:
        idles = [idle for idle in _idles(plays[bot]) if idle <= SESSION_MAX_IDLE]
        assert len(idles) >= 500, bot
        assert min(idles) >= 3, bot
        assert max(idles) <= 9, bot
        assert statistics.pstdev(idles) / statistics.mean(idles) < 0.2, bot

        survived = sum(play.survived for play in plays[bot]) / len(plays[bot])
        assert survived >= 0.98, bot

        day_plays = [play for play in plays[bot] if play.start // DAY == first_day]
        assert len(day_plays) >= 300, bot
        assert len({play.start // HOUR for play in day_plays}) >= 16, bot


def test_humans_play_sessions(corpus):
    plays = corpus.plays()
    session_lengths = []
    for human in corpus.humans:
        session = 1
        for idle in _idles(plays[human]):
            # In a session, 30 s to 15 min. Otherwise a break longer than the
            # 30 min that split sessions in mart_player_sessions.
            in_session = HUMAN_MIN_IDLE <= idle <= HUMAN_MAX_IDLE
            assert in_session or idle > SESSION_MAX_IDLE, (human, idle)
            if in_session:
                session += 1
            else:
                session_lengths.append(session)
                session = 1
        session_lengths.append(session)
    assert max(session_lengths) <= HUMAN_SESSION_BATTLES[1]
    assert statistics.mean(session_lengths) >= 2.5


def test_humans_sleep(corpus):
    plays = corpus.plays()
    first_day = _unix(corpus.truths[0]["battle"]["start"]) // DAY
    long_players = 0
    for human in corpus.humans:
        starts = [play.start for play in plays[human]]
        day_starts = [start for start in starts if start // DAY == first_day]
        # A sleep of 6 hours or more leaves at least 5 whole hours empty.
        assert len({start // HOUR for start in day_starts}) <= 19, human
        # A span of 33 hours contains a whole sleep (9 hours at most), and a
        # battle started before the sleep ends at most 383 s later.
        if starts[-1] - starts[0] < 33 * HOUR:
            continue
        long_players += 1
        longest_rest = max(_idles(plays[human]))
        assert longest_rest >= 6 * HOUR - 383, human
    assert long_players >= len(corpus.humans) // 2


def test_pve_groups_are_often_clanmates(corpus):
    groups = clanmate_groups = 0
    for truth in corpus.truths:
        players = _players(truth)
        if _kind(truth) != "pve" or len(players) < 2:
            continue
        groups += 1
        clans = Counter(truth["roster"][p["login"]]["clan"] for p in players)
        clans.pop(None, None)
        clanmate_groups += any(count >= 2 for count in clans.values())
    assert groups >= 100
    assert clanmate_groups / groups >= 0.4


def test_pvp_battles_have_rivals_and_clan_wars(corpus):
    rivals = {clan["name"]: set(clan["rivals"]) for clan in corpus.population["clans"]}
    pvp = wars = 0
    for truth in corpus.truths:
        if _kind(truth) == "pve":
            continue
        pvp += 1
        clans_by_side = defaultdict(set)
        for participant in _players(truth):
            clan = truth["roster"][participant["login"]]["clan"]
            clans_by_side[participant["side"]].add(clan)
        # The clans that make up a whole side on their own.
        clan_sides = [
            next(iter(clans)) for clans in clans_by_side.values()
            if len(clans) == 1 and None not in clans
        ]
        wars += any(
            second in rivals[first] for first in clan_sides for second in clan_sides
        )
    assert pvp >= 150
    assert wars >= 30


def _markup_names(population: Population) -> list[str]:
    names = [member.login for member in population.members] + population.clans
    return [name for name in names if any(char in name for char in "&\"<>'")]


def test_population_names_escaped_in_logs(tmp_path):
    # The first seed whose 20 players or clans have two names with markup
    # characters; every member plays in 300 battles at this pace.
    seed = next(
        seed for seed in range(1000) if len(_markup_names(Population(seed, 20))) >= 2
    )
    files = write_corpus(
        tmp_path, 300, seed=seed, layout="flat", truth=True, players=20, interval=60,
    )
    truths = _read_corpus(tmp_path).truths
    seen = set()
    for file, truth in zip(files, truths):
        root = etree.fromstring(b"<R>" + file.path.read_bytes() + b"</R>", XML_PARSER)
        read = {
            (user.get("login"), user.get("clan"))
            for user in root.iter("USER") if user.get("battleid")
        }
        expected = {(login, entry["clan"]) for login, entry in truth["roster"].items()}
        assert read == expected, truth["battle"]["id"]
        seen |= {name for pair in expected for name in pair}
    assert set(_markup_names(Population(seed, 20))) <= seen


# Through the pipeline ------------------------------------------------------------


@pytest.mark.postgres
def test_bot_suspicion_ranks_the_bot_first(pg, pg_dsn, tmp_path):
    folder = tmp_path / "corpus"
    write_corpus(
        folder, 1000, seed=4, truth=True, players=10, bots=1, clans=3, interval=300,
        gzip_share=0.2,
    )
    corpus = _read_corpus(folder)
    settings = IngestSettings(
        dsn=pg_dsn, archive_root=tmp_path / "archive", quarantine_root=tmp_path / "q",
    )
    result = run_ingest([folder], settings, workers=1)
    assert result.status == "succeeded", result.summary
    assert result.summary["loaded"] == 1000

    # The stored participants are those of the truth.
    stored = defaultdict(list)
    for battle_id, login, clan, profession in pg.execute(
        "SELECT b.battle_id, p.login, p.clan, p.profession FROM participants p"
        " JOIN battles b ON b.id = p.battle WHERE NOT p.is_monster"
        " ORDER BY b.battle_id, p.pid"
    ):
        stored[battle_id].append((login, clan, profession))
    for truth in corpus.truths:
        roster = truth["roster"]
        expected = [
            (p["login"], roster[p["login"]]["clan"], roster[p["login"]]["profession"])
            for p in _players(truth)
        ]
        assert stored[truth["battle"]["id"]] == expected

    scores = defaultdict(dict)
    rows = pg.execute("SELECT day, login, score FROM mart_bot_suspicion")
    for day, login, score in rows:
        scores[day][login] = score
    [bot] = corpus.bots
    first_day = scores[date(2025, 10, 1)]
    assert first_day[bot] >= 0.75
    human_scores = [score for login, score in first_day.items() if login != bot]
    assert len(human_scores) >= 5, "humans with 5 or more battles that day"
    assert max(human_scores) < 0.2
    for day, day_scores in scores.items():
        if bot in day_scores:
            assert day_scores[bot] == max(day_scores.values()), day
            assert day_scores[bot] > 0, day
