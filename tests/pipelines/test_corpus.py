"""Tests for the synthetic battle-log generator in pipelines.battlelogs.corpus.

The generator's truth is checked against an independent reading of the
generated XML (``_evaluate`` below), which applies the counting rules to the
markup with lxml's tree API. Its ``roster`` key is checked separately
(``_read_roster``), against the roster attributes of the XML.
"""

import calendar
import gzip
import hashlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from pipelines.battlelogs.corpus import (
    MAX_DURATION,
    MAX_TURNS,
    MIN_DURATION,
    MIN_TURNS,
    PERIOD_END,
    PERIOD_START,
    SHARD_SIZE,
    TRUTH_FILE,
    CorpusFile,
    GeneratedLog,
    generate_log,
    log_path,
    main,
    write_corpus,
)
from pipelines.battlelogs.model import monster_kind


PROJECT_ROOT = Path(__file__).resolve().parents[2]
XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
SELF_TYPES = ("13", "29")

# Size ranges of production samples, in bytes.
MIN_SIZE = 15_000
MAX_SIZE = 290_000
DUEL_SIZES = (15_000, 29_000)
SOLO_30_SIZES = (46_000, 70_000)


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(b"<R>" + data + b"</R>", XML_PARSER)


def _first_copy(root: etree._Element) -> tuple[etree._Element, list, int]:
    """Return the first BATTLE element, its TURNs, and the number of BATTLE copies."""
    container = root[0] if len(root) and root[0].tag == "BLOOK" else root
    children = list(container)
    positions = [
        index for index, element in enumerate(children) if element.tag == "BATTLE"
    ]
    battle = children[positions[0]]
    end = positions[1] if len(positions) > 1 else len(children)
    nested = [element for element in battle if element.tag == "TURN"]
    following = [
        element for element in children[positions[0] + 1:end] if element.tag == "TURN"
    ]
    return battle, nested + following, len(positions)


def _actions(turns: list) -> list:
    return [action for turn in turns for action in turn.iter("a")]


def _plain_amount(descriptor: str) -> int | None:
    """Return the hit amount of an HP descriptor, or None for letter-coded damage."""
    fields = descriptor.split(":")
    amount = fields[0] if len(fields) == 1 else fields[1]
    if amount[:1].isalpha():
        return None
    return int(amount)


def _iso(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _unix(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def _new_participant(login: str, element: etree._Element, joined_turn: int) -> dict:
    return {
        "login": login,
        "side": int(element.get("side")),
        "level": int(element.get("level")),
        "is_monster": login.startswith("$"),
        "survived": True,
        "escaped": False,
        "joined_turn": joined_turn,
        "kills_monsters": 0,
        "kills_players": 0,
        "damage_dealt": 0,
        "damage_taken": 0,
        "healed": 0,
    }


def _apply_attack(action: etree._Element, actor: dict, units: dict) -> None:
    target_login = action.get("login")
    if target_login is not None:
        target = units[target_login]  # KeyError: a target named before it appears
    elif action.get("type") in SELF_TYPES:
        target = actor
    else:
        return
    descriptor = action.get("HP")
    amount = _plain_amount(descriptor) if descriptor is not None else None
    if amount is None:
        return
    if amount > 0:
        actor["damage_dealt"] += amount
        target["damage_taken"] += amount
    elif amount < 0:
        target["healed"] -= amount


def _apply_action(action: etree._Element, actor: dict, units: dict, pickups: list):
    code = action.get("t")
    if code == "5":
        _apply_attack(action, actor, units)
    elif code == "20" and action.get("code") == "7":
        victim = action.get("login")
        if victim.startswith("$"):
            actor["kills_monsters"] += 1
        elif victim != actor["login"]:
            actor["kills_players"] += 1
    elif code == "7":
        actor["survived"] = False
    elif code == "8" and action.get("id") is not None:
        item_id = int(action.get("id"))
        name, count = action.get("txt"), action.get("count")
        pickups.append((actor["login"], item_id, name, count))
    elif code == "9":
        actor["escaped"] = True


def _loot(pickups: list, map_ids: set, logins: list[str]) -> list[dict]:
    order = {login: index for index, login in enumerate(logins)}
    seen, totals = set(), Counter()
    for login, item_id, name, count in pickups:
        if map_ids and item_id not in map_ids:
            continue
        if (login, item_id) in seen:
            continue
        seen.add((login, item_id))
        totals[(order[login], name)] += int(count) if count and int(count) else 1
    return [
        {"login": logins[index], "item": name, "qty": qty}
        for (index, name), qty in sorted(totals.items())
    ]


def _evaluate(data: bytes) -> dict:
    """Read a generated log with lxml and apply the counting rules to it."""
    battle, turns, copies = _first_copy(_tree(data))
    x, y, start = (int(field) for field in battle.get("note").split(","))
    units: dict[str, dict] = {}
    for user in battle.iterchildren("USER"):
        login = user.get("login")
        units[login] = _new_participant(login, user, 0)
        if user.get("HP") == "0":
            units[login]["survived"] = False
    map_ids = {
        int(item.get("id"))
        for item in battle.iterchildren("O")
        if item.get("bx") is not None
    }

    pickups = []
    for turn in turns:
        number = int(turn.get("turn"))
        for user in turn.iterchildren("USER"):
            login = user.get("login")
            if login not in units:
                units[login] = _new_participant(login, user, number)
            elif user.get("sf") is not None and units[login]["joined_turn"] == 0:
                units[login]["joined_turn"] = number
            actor = units[login]
            if user.get("HP") == "0":
                actor["survived"] = False
            for action in user.iterchildren("a"):
                _apply_action(action, actor, units, pickups)

    flags = ["duplicated_log"] if copies > 1 else []
    if map_ids and any(item_id not in map_ids for _, item_id, _, _ in pickups):
        flags.append("unmatched_pickups")
    return {
        "battle": {
            "id": int(battle.find("USER").get("battleid")),
            "server": "main",
            "start": _iso(start),
            "end": _iso(int(battle.get("t2"))),
            "turns": int(battle.get("turn")),
            "type": battle.get("f"),
            "x": x,
            "y": y,
            "flags": sorted(flags),
        },
        "participants": list(units.values()),
        "loot": _loot(pickups, map_ids, list(units)),
    }


def _without_roster(truth: dict) -> dict:
    # The keys that ``_evaluate`` reads, which are those ``tzr-ingest show`` prints.
    return {key: value for key, value in truth.items() if key != "roster"}


def _read_roster(data: bytes) -> dict:
    """Read each unit's roster attributes from its first USER tag that carries them."""
    battle, turns, _ = _first_copy(_tree(data))
    users = list(battle.iterchildren("USER"))
    users += [user for turn in turns for user in turn.iterchildren("USER")]
    roster = {}
    for user in users:
        login = user.get("login")
        if login in roster or user.get("battleid") is None:
            continue
        monster = login.startswith("$")
        rank_points = user.get("rank_points")
        pve_points = user.get("pve_points")
        profession = user.get("pro")
        roster[login] = {
            "level": int(user.get("level")),
            "clan": user.get("clan"),
            "profession": None if profession is None else int(profession),
            "creature_type": int(user.get("man")),
            "rank_points": None if rank_points is None else float(rank_points),
            "pve_points": None if pve_points is None else int(pve_points),
            "monster_kind": monster_kind(login) if monster else None,
            "elite": monster and (
                "_" in login or user.get("def") is not None or user.get("color") is not None
            ),
        }
    return roster


@pytest.fixture(scope="module")
def sample() -> list[GeneratedLog]:
    """Six hundred logs of all kinds, every tenth one duplicated."""
    rng = random.Random(20251009)
    return [
        generate_log(rng, 4_000_000 + index, duplicate=index % 10 == 0)
        for index in range(600)
    ]


# Determinism and arguments -------------------------------------------------


def test_generate_log_same_seed_same_bytes():
    first = generate_log(random.Random(42), 4_000_001)
    second = generate_log(random.Random(42), 4_000_001)
    other = generate_log(random.Random(43), 4_000_001)
    assert first.data == second.data
    assert first.truth == second.truth
    assert first.data != other.data


def test_generate_log_uses_given_start_and_kind():
    log = generate_log(random.Random(1), 4_000_002, kind="pvp", start=1_760_000_000)
    assert log.truth["battle"]["start"] == "2025-10-09T08:53:20Z"
    assert not any(p["is_monster"] for p in log.truth["participants"])


def test_generate_log_rejects_unknown_kind():
    with pytest.raises(ValueError, match="invalid battle kind"):
        generate_log(random.Random(1), 4_000_003, kind="raid")


def test_duplicate_changes_only_the_flag():
    single = generate_log(random.Random(5), 4_000_004)
    double = generate_log(random.Random(5), 4_000_004, duplicate=True)
    expected_flags = sorted({"duplicated_log", *single.truth["battle"]["flags"]})
    assert double.truth["battle"]["flags"] == expected_flags
    assert double.truth["participants"] == single.truth["participants"]
    assert double.truth["loot"] == single.truth["loot"]
    assert double.data.count(b"<BATTLE ") == 2
    assert len(double.data) > 1.9 * len(single.data)


# Markup -------------------------------------------------------------------


def test_every_log_is_well_formed_xml(sample):
    for log in sample:
        root = _tree(log.data)
        assert not log.data.startswith(b"<?xml")
        assert root[0].tag in ("BLOOK", "BATTLE"), log.battle_id


def test_duplicated_copies_are_identical(sample):
    for log in sample:
        text = log.data.decode()
        first_start = text.index("<BATTLE ")
        second_start = text.find("<BATTLE ", first_start + 1)
        if "duplicated_log" not in log.truth["battle"]["flags"]:
            assert second_start == -1, log.battle_id
            continue
        assert text.count("<BATTLE ") == 2, log.battle_id
        first = text[first_start:second_start].strip()
        rest = text[second_start:].strip()
        assert rest.startswith(first), log.battle_id
        assert rest[len(first):].strip() in ("", "</BLOOK>"), log.battle_id


def _features(log: GeneratedLog) -> dict[str, bool]:
    """Return, per format variation, whether one log shows it."""
    text = log.data.decode()
    root = _tree(log.data)
    battle, turns, _ = _first_copy(root)
    participants = log.truth["participants"]
    roster = {user.get("login") for user in battle.iterchildren("USER")}
    actions = _actions(turns)
    hp_values = [action.get("HP") for action in actions if action.get("HP")]
    checks = {
        "no BLOOK": root[0].tag != "BLOOK",
        "TURN inside BATTLE": any(turn.getparent() is battle for turn in turns),
        "single quotes": "='" in text,
        "no line breaks": "\n" not in text,
        "Cyrillic": any("\u0400" <= char <= "\u04ff" for char in text),
        "&amp;": "&amp;" in text,
        "&quot;": "&quot;" in text,
        "&lt;": "&lt;" in text,
        "&apos;": "&apos;" in text,
        "elite def": ' def="' in text or " def='" in text,
        "elite color": "color=" in text,
        "elite suffix": any(
            p["is_monster"] and "_" in p["login"] for p in participants
        ),
        "roster joiner": any(
            p["joined_turn"] and p["login"] in roster for p in participants
        ),
        "turn-only joiner": len(participants) > len(roster),
        "escape": any(p["escaped"] for p in participants),
        "player kill": any(p["kills_players"] for p in participants),
        "heal": any(p["healed"] for p in participants),
        "loot": bool(log.truth["loot"]),
        "unmatched pickup": "unmatched_pickups" in log.truth["battle"]["flags"],
        "poison tick": any(":A-" in value for value in hp_values),
        "effect": any(value.count(":") == 2 for value in hp_values),
        "bare amount": any(":" not in value for value in hp_values),
        "cell shot": any(action.get("xy") for action in actions),
        "useperk": any(action.get("type") == "useperk" for action in actions),
        "t=19": any(action.get("t") == "19" for action in actions),
        "t=21": any(action.get("t") == "21" for action in actions),
        "pickup without count": any(
            action.get("t") == "8" and action.get("count") in (None, "0")
            for action in actions
        ),
    }
    return checks


def test_sample_covers_format_variations(sample):
    counts = Counter()
    for log in sample:
        for name, present in _features(log).items():
            counts[name] += present
    missing = sorted(name for name, count in counts.items() if count == 0)
    assert missing == [], f"never generated in {len(sample)} logs"


# Truth ----------------------------------------------------------------------


def test_truth_matches_independent_reading(sample):
    for log in sample:
        assert _without_roster(log.truth) == _evaluate(log.data), log.battle_id


def test_truth_roster_matches_attributes(sample):
    for log in sample:
        roster = log.truth["roster"]
        assert list(roster) == [p["login"] for p in log.truth["participants"]]
        assert roster == _read_roster(log.data), log.battle_id
        for participant in log.truth["participants"]:
            assert roster[participant["login"]]["level"] == participant["level"]


def test_truth_has_all_keys_and_sane_header(sample):
    participant_keys = {
        "login", "side", "level", "is_monster", "survived", "escaped", "joined_turn",
        "kills_monsters", "kills_players", "damage_dealt", "damage_taken", "healed",
    }
    for log in sample:
        battle = log.truth["battle"]
        assert set(log.truth) == {"battle", "participants", "loot", "roster"}
        assert battle["id"] == log.battle_id
        assert battle["server"] == "main"
        assert battle["type"] in ("A", "B", "C", "D")
        assert MIN_TURNS <= battle["turns"] <= MAX_TURNS
        assert all(set(p) == participant_keys for p in log.truth["participants"])
        logins = [p["login"] for p in log.truth["participants"]]
        assert len(logins) == len(set(logins)), log.battle_id


def test_times_and_durations_in_range(sample):
    for log in sample:
        start = _unix(log.truth["battle"]["start"])
        end = _unix(log.truth["battle"]["end"])
        assert PERIOD_START <= start < PERIOD_END
        assert MIN_DURATION <= end - start <= MAX_DURATION


def test_kill_credits_match_deaths(sample):
    for log in sample:
        _, turns, _ = _first_copy(_tree(log.data))
        participants = log.truth["participants"]
        dead = {p["login"] for p in participants if not p["survived"]}
        credits = Counter(
            action.get("login")
            for action in _actions(turns)
            if action.get("t") == "20" and action.get("code") == "7"
        )
        for victim, count in credits.items():
            assert count == 1, (log.battle_id, victim)
            assert victim in dead, (log.battle_id, victim)
        kills = sum(p["kills_monsters"] + p["kills_players"] for p in participants)
        assert kills <= len(dead), log.battle_id


def _final_moments(turns: list, battle_id: int) -> dict[str, tuple[int, int]]:
    # The (turn, frame) of each unit's death or escape.
    ends = {}
    for turn in turns:
        for user in turn.iterchildren("USER"):
            for action in user.iterchildren("a"):
                if action.get("t") in ("7", "9"):
                    login = user.get("login")
                    assert login not in ends, (battle_id, login)
                    ends[login] = (int(turn.get("turn")), int(action.get("sf")))
    return ends


def test_dead_and_escaped_units_never_act_again(sample):
    # Blocks in a TURN are ordered by their first frame, so "later" is decided
    # by (turn, frame), not by document order.
    never = (MAX_TURNS + 1, 0)
    for log in sample:
        _, turns, _ = _first_copy(_tree(log.data))
        ends = _final_moments(turns, log.battle_id)
        for turn in turns:
            number = int(turn.get("turn"))
            for user in turn.iterchildren("USER"):
                login = user.get("login")
                end = ends.get(login, never)
                assert number <= end[0], (log.battle_id, number, login)
                for action in user.iterchildren("a"):
                    moment = (number, int(action.get("sf")))
                    assert moment <= end, (log.battle_id, moment, login)
                    target = action.get("login")
                    if action.get("t") != "5" or target in (None, login):
                        continue
                    target_end = ends.get(target, never)
                    assert moment <= target_end, (log.battle_id, moment, target)


def test_frames_increase_within_each_unit_block(sample):
    for log in sample:
        _, turns, _ = _first_copy(_tree(log.data))
        for turn in turns:
            for user in turn.iterchildren("USER"):
                frames = [int(action.get("sf")) for action in user.iterchildren("a")]
                where = (log.battle_id, turn.get("turn"), user.get("login"))
                assert frames == sorted(frames), where
                if user.get("sf") is not None and frames:
                    assert int(user.get("sf")) <= frames[0], where


def test_turns_are_numbered_and_non_empty(sample):
    for log in sample:
        _, turns, _ = _first_copy(_tree(log.data))
        numbers = [int(turn.get("turn")) for turn in turns]
        assert numbers == list(range(1, log.truth["battle"]["turns"] + 1))
        assert all(len(turn) > 0 for turn in turns), log.battle_id


def test_targets_appear_before_they_are_named(sample):
    for log in sample:
        battle, turns, _ = _first_copy(_tree(log.data))
        known = {user.get("login") for user in battle.iterchildren("USER")}
        for turn in turns:
            for user in turn.iterchildren("USER"):
                known.add(user.get("login"))
                for action in user.iterchildren("a"):
                    target = action.get("login")
                    assert target is None or target in known, (log.battle_id, target)
        assert {p["login"] for p in log.truth["participants"]} == known


# Sizes ----------------------------------------------------------------------


def _is_solo_30(truth: dict) -> bool:
    # One player against 29-31 monsters, over at least 4 turns. Fights of 2-3
    # turns are drawn smaller.
    participants = truth["participants"]
    monsters = sum(p["is_monster"] for p in participants)
    players = len(participants) - monsters
    return players == 1 and 29 <= monsters <= 31 and truth["battle"]["turns"] >= 4


def test_sizes_per_kind_match_production_ranges():
    rng = random.Random(77)
    duels, solo_30, others = [], [], []
    for index in range(300):
        log = generate_log(rng, 4_100_000 + index, kind="pvp")
        players = log.truth["participants"]
        (duels if len(players) == 2 else others).append(len(log.data))
    for index in range(400):
        kind = "mixed" if index % 4 == 0 else "pve"
        log = generate_log(rng, 4_200_000 + index, kind=kind)
        (solo_30 if _is_solo_30(log.truth) else others).append(len(log.data))

    assert len(duels) > 150
    assert min(duels) >= DUEL_SIZES[0]
    assert max(duels) <= DUEL_SIZES[1]
    assert len(solo_30) > 15
    assert min(solo_30) >= SOLO_30_SIZES[0]
    assert max(solo_30) <= SOLO_30_SIZES[1]
    assert min(others) >= MIN_SIZE
    assert max(others) <= MAX_SIZE


def test_huge_fights_stay_under_the_largest_sample():
    # About 1 in 80 PvE fights has 100-400 monsters, and this seed yields several.
    rng = random.Random(3)
    huge = []
    for index in range(800):
        log = generate_log(rng, 4_300_000 + index, kind="pve")
        monsters = sum(p["is_monster"] for p in log.truth["participants"])
        if monsters >= 100:
            huge.append((monsters, len(log.data)))
    assert len(huge) >= 3
    for monsters, size in huge:
        assert size <= MAX_SIZE
        assert size / monsters >= 550, (monsters, size)
        assert size / monsters <= 950, (monsters, size)


# write_corpus and the command line ------------------------------------------------


def test_write_corpus_sharded_layout(tmp_path):
    first_id = 2 * SHARD_SIZE - 2
    files = write_corpus(tmp_path, 4, seed=9, first_id=first_id)
    expected = []
    for battle_id in range(first_id, first_id + 4):
        path = tmp_path / str(battle_id // SHARD_SIZE) / f"{battle_id}.tzb"
        expected.append(CorpusFile(battle_id, path))
    assert files == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["1", "2"]
    assert not (tmp_path / TRUTH_FILE).exists()


def test_write_corpus_flat_layout_matches_sharded(tmp_path):
    flat = write_corpus(tmp_path / "flat", 5, seed=9, layout="flat")
    sharded = write_corpus(tmp_path / "sharded", 5, seed=9)
    for flat_file, sharded_file in zip(flat, sharded):
        assert flat_file.path.parent == tmp_path / "flat"
        assert flat_file.path.read_bytes() == sharded_file.path.read_bytes()


def test_write_corpus_gzip_files_hold_the_same_logs(tmp_path):
    plain = write_corpus(tmp_path / "plain", 12, seed=4, layout="flat")
    mixed = write_corpus(tmp_path / "mixed", 12, seed=4, layout="flat", gzip_share=0.5)
    compressed = [file for file in mixed if file.path.name.endswith(".tzb.gz")]
    assert 0 < len(compressed) < 12
    for plain_file, mixed_file in zip(plain, mixed):
        data = mixed_file.path.read_bytes()
        if mixed_file.path.suffix == ".gz":
            data = gzip.decompress(data)
        assert data == plain_file.path.read_bytes()
    gz_path = log_path(tmp_path, 7, layout="flat", compressed=True)
    assert gz_path == tmp_path / "7.tzb.gz"


def test_write_corpus_truth_lines_match_files(tmp_path):
    files = write_corpus(tmp_path, 30, seed=2, truth=True, duplicate_share=0.2)
    lines = (tmp_path / TRUTH_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(files)
    duplicated = 0
    for file, line in zip(files, lines):
        truth = json.loads(line)
        assert truth["battle"]["id"] == file.battle_id
        assert _without_roster(truth) == _evaluate(file.path.read_bytes())
        duplicated += "duplicated_log" in truth["battle"]["flags"]
    assert duplicated > 0


def test_write_corpus_is_deterministic_and_spreads_starts(tmp_path):
    first = write_corpus(tmp_path / "a", 20, seed=8, layout="flat", truth=True)
    second = write_corpus(tmp_path / "b", 20, seed=8, layout="flat", truth=True)
    for first_file, second_file in zip(first, second):
        assert first_file.path.read_bytes() == second_file.path.read_bytes()
    first_truth = (tmp_path / "a" / TRUTH_FILE).read_bytes()
    assert first_truth == (tmp_path / "b" / TRUTH_FILE).read_bytes()
    starts = [json.loads(line)["battle"]["start"] for line in first_truth.splitlines()]
    assert starts[0] < starts[10] < starts[-1]


# Digests of write_corpus(40, seed=12, gzip_share=0.3, duplicate_share=0.1,
# truth=True) as written before populations existed: of the file names with
# the uncompressed logs, and of truth.jsonl without its "roster" key. Change
# them only for an intended change of the default output.
PINNED_LOGS_SHA256 = "f32e8d09f225a9cb50938b4dc717d4cdfab2c16f2b0aaef5c53fa740b74f9339"
PINNED_TRUTH_SHA256 = "c54f9f9271e024b1b3bdbff3020c3f0501a40e0e6af21ffc390ae987b58b88c0"


def test_write_corpus_default_output_is_pinned(tmp_path):
    files = write_corpus(tmp_path, 40, seed=12, gzip_share=0.3, duplicate_share=0.1, truth=True)
    logs = hashlib.sha256()
    for file in files:
        data = file.path.read_bytes()
        if file.path.suffix == ".gz":
            data = gzip.decompress(data)
        name = file.path.relative_to(tmp_path).as_posix().encode()
        logs.update(name + b"\0" + data + b"\0")
    lines = (tmp_path / TRUTH_FILE).read_text(encoding="utf-8").splitlines()
    truth_text = "\n".join(
        json.dumps(_without_roster(json.loads(line)), ensure_ascii=False) for line in lines
    )
    assert logs.hexdigest() == PINNED_LOGS_SHA256
    assert hashlib.sha256(truth_text.encode()).hexdigest() == PINNED_TRUTH_SHA256
    assert not (tmp_path / "population.json").exists()


def test_write_corpus_kind_selection(tmp_path):
    write_corpus(tmp_path, 10, seed=1, layout="flat", kinds=["pvp"], truth=True)
    for line in (tmp_path / TRUTH_FILE).open(encoding="utf-8"):
        assert not any(p["is_monster"] for p in json.loads(line)["participants"])


@pytest.mark.parametrize(
    "arguments",
    [
        {"layout": "nested"},
        {"gzip_share": 1.5},
        {"kinds": ["raid"]},
        {"kinds": {"pve": 0}},
    ],
)
def test_write_corpus_rejects_invalid_arguments(tmp_path, arguments):
    with pytest.raises(ValueError):
        write_corpus(tmp_path, 1, **arguments)


def test_main_writes_corpus_and_summary(tmp_path, capsys):
    arguments = [
        str(tmp_path), "--count", "3", "--layout", "flat", "--truth", "--kind", "pvp",
    ]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert output.startswith("wrote 3 files")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "4000000.tzb", "4000001.tzb", "4000002.tzb", TRUTH_FILE,
    ]


def test_module_runs_as_script(tmp_path):
    command = [
        sys.executable, "-m", "pipelines.battlelogs.corpus", str(tmp_path),
        "--count", "2", "--seed", "3",
    ]
    result = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 files" in result.stdout
    assert (tmp_path / "80" / "4000001.tzb").exists()
