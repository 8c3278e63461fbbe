from pathlib import Path

import pandas as pd
import pytest

from pipelines.battlelogs.summary import battle_summary
from pipelines.battlelogs.frames import BattleSource, build_frames
from pipelines.battlelogs.model import monster_kind
from pipelines.battlelogs.parse import parse_hit, parse_log, strip_copies
from pipelines.battlelogs.read import Rejected


DATA = Path(__file__).parent / "data"


def load(name: str, expected_id: int | None = None):
    return parse_log((DATA / f"{name}.tzb").read_bytes(), expected_id)


def shape(battle):
    return build_frames([battle], [BattleSource(server="main", sha256="", size=0, source_path="")])


def records(frame: pd.DataFrame) -> list[dict]:
    return [
        {key: (None if pd.isna(value) else value) for key, value in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def units(battle) -> dict[str, dict]:
    return {row["login"]: row for row in records(shape(battle).participants)}


# EXAMPLE A: PvE, one player against rats and an elite stich


def test_pve_example_header():
    battle = load("4100001", 4100001)
    summary = battle_summary(battle, "main")["battle"]
    assert summary == {
        "id": 4100001,
        "server": "main",
        "start": "2025-10-09T08:53:30Z",
        "end": "2025-10-09T08:55:30Z",
        "turns": 3,
        "type": "B",
        "x": 12,
        "y": -7,
        "flags": [],
    }
    assert battle.turn_seconds == 40
    assert battle.turns_seen == 3
    assert battle.map_rows == ["BBBBBBBBqB", "BBkBBBBBBB", "BBBBBBUBBB", "BBBBBBBBBB"]
    assert len(battle.map_hash) == 16
    assert battle.players == 1
    assert battle.monsters == 3
    assert not battle.unknown


def test_pve_example_player():
    player = units(load("4100001"))["Ranger Ola"]
    assert player["side"] == 1
    assert player["level"] == 12
    assert player["clan"] == "North Wind"
    assert player["profession"] == 2
    assert player["creature_type"] == 0
    assert player["rank_points"] == 41.5
    assert player["pve_points"] == 120300
    assert player["survived"]
    assert player["escaped"]
    assert player["escaped_turn"] == 3
    assert player["joined_turn"] == 0
    assert player["kills_monsters"] == 2
    assert player["kills_players"] == 0
    # 35 + 48 (critical) + 31 (piercing) + 29; the A-3 poison tick is an effect.
    assert player["damage_dealt"] == 143
    # 18 (+ paralysis 4) and 22 (+ poison 3): effect strengths are not damage.
    assert player["damage_taken"] == 40
    assert player["healed"] == 30


def test_pve_example_monsters():
    by_login = units(load("4100001"))
    rat_a, rat_b, stich = by_login["$rat501"], by_login["$rat502"], by_login["$stich88_2"]
    assert (rat_a["monster_kind"], rat_a["level"], rat_a["side"], rat_a["elite"]) == ("rat", 14, 2, False)
    assert (rat_b["monster_kind"], rat_b["level"], rat_b["side"], rat_b["elite"]) == ("rat", 15, 2, False)
    assert rat_a["died_turn"] == 1
    assert rat_b["died_turn"] == 2
    assert not rat_a["survived"]
    assert stich["monster_kind"] == "sti"
    assert stich["elite"]
    assert stich["elite_spec"] == "3"
    assert stich["level"] == 16
    assert stich["survived"]
    assert stich["damage_dealt"] == 22
    assert rat_a["damage_taken"] == 83
    assert rat_b["damage_taken"] == 60


def test_pve_example_events_and_loot():
    battle = load("4100001")
    frames = shape(battle)
    kills = records(frames.kills)
    assert [(k["seq"], k["turn"], k["frame"], k["killer"], k["victim"]) for k in kills] == [
        (4, 1, 5, 0, 1),
        (10, 2, 0, 0, 2),
    ]
    loot = records(frames.loot)
    assert [(r["pid"], r["item_id"], r["template"], r["name"], r["qty"], r["on_map"]) for r in loot] == [
        (0, 7700001, "b2-s4", "Organic", 6, True),
    ]
    assert loot[0]["category"] == "resource"
    assert battle_summary(battle, "main")["loot"] == [{"login": "Ranger Ola", "item": "Organic", "qty": 6}]

    events = records(frames.events)
    assert len(events) == 17
    assert [e["seq"] for e in events] == list(range(1, 18))
    stance = events[0]
    assert (stance["turn"], stance["frame"], stance["actor"], stance["action"], stance["value"]) == (1, 0, 0, 6, 3)
    crit = events[2]
    assert (crit["turn"], crit["frame"], crit["actor"], crit["action"], crit["attack_type"], crit["target"]) == (
        1, 5, 0, 5, "3", 1,
    )
    assert (crit["hit_kind"], crit["amount"], crit["effect_code"], crit["effect_amount"], crit["heal"]) == (
        1, 48, None, None, None,
    )
    paralysis = events[6]
    assert paralysis["actor"] == 2
    assert (paralysis["amount"], paralysis["effect_code"], paralysis["effect_amount"]) == (18, "P", 4)
    self_heal = events[14]
    assert self_heal["attack_type"] == "13"
    assert self_heal["target"] == 0
    assert (self_heal["amount"], self_heal["heal"]) == (None, 30)
    poison_tick = events[15]
    assert (poison_tick["amount"], poison_tick["effect_code"], poison_tick["effect_amount"]) == (None, "A", -3)
    kill_credit = events[3]
    assert (kill_credit["action"], kill_credit["code"], kill_credit["target"]) == (20, 7, 1)
    pickup = events[11]
    assert (pickup["action"], pickup["item_id"]) == (8, 7700001)
    escape = events[16]
    assert (escape["turn"], escape["action"]) == (3, 9)


# EXAMPLE B: PvP duel, a third party joins in turn 2


def test_pvp_example():
    battle = load("4200002", 4200002)
    by_login = units(battle)
    assert list(by_login) == ["Alpha", "Браво", "Gamma"]
    assert battle.players == 3
    assert battle.monsters == 0
    alpha, bravo, gamma = by_login["Alpha"], by_login["Браво"], by_login["Gamma"]
    assert alpha["clan"] == "Iron & Ash"
    assert alpha["rank_points"] == 512.25
    assert alpha["kills_players"] == 1
    assert alpha["kills_monsters"] == 0
    assert alpha["damage_dealt"] == 29 + 260
    assert bravo["rank_points"] == 498
    assert not bravo["survived"]
    assert bravo["died_turn"] == 2
    assert bravo["damage_taken"] == 29 + 120 + 260
    assert gamma["side"] == 3
    assert gamma["in_roster"]
    assert gamma["joined_turn"] == 2
    assert gamma["joined_frame"] == 1
    assert gamma["survived"]
    assert alpha["joined_turn"] == 0


def test_pvp_example_cell_shot():
    events = records(shape(load("4200002")).events)
    cell_shot = events[2]
    assert cell_shot["attack_type"] == "10"
    assert cell_shot["target"] is None
    assert (cell_shot["cell_x"], cell_shot["cell_y"]) == (7, 1)
    assert cell_shot["amount"] == 0
    rank_change = events[-2]
    assert rank_change["action"] == 19


# EXAMPLE C: the same battle twice in one file


def test_duplicated_log_counted_once():
    battle = load("4300003", 4300003)
    frames = shape(battle)
    assert battle.copies == 2
    assert "duplicated_log" in battle.flags
    assert len(frames.kills) == 1
    assert len(frames.events) == 4
    assert len(frames.participants) == 2
    summary = battle_summary(battle, "main")
    assert summary["battle"]["flags"] == ["duplicated_log"]
    assert summary["loot"] == [{"login": "Solo", "item": "Venom", "qty": 4}]
    assert summary["participants"][0]["kills_monsters"] == 1
    assert summary["participants"][1]["login"] == "$scr7"
    assert battle.participants[1].monster_kind == "scr"


def test_whole_log_written_twice():
    data = (DATA / "4100001.tzb").read_bytes()
    battle = parse_log(data + b"\n" + data, 4100001)
    assert battle.copies == 2
    assert "duplicated_log" in battle.flags
    assert len(battle.action_codes) == 17


def test_whole_log_twice_with_a_change():
    data = (DATA / "4100001.tzb").read_bytes()
    with pytest.raises(Rejected) as error:
        parse_log(data + data.replace(b'HP="1:48"', b'HP="1:49"'), 4100001)
    assert error.value.reason == "conflicting_copies"


def test_conflicting_copies_rejected():
    data = (DATA / "4300003.tzb").read_bytes()
    first = data.index(b"<BATTLE")
    second = data.index(b"<BATTLE", first + 1)
    changed = data[:second] + data[second:].replace(b'count="4"', b'count="5"')
    with pytest.raises(Rejected) as error:
        parse_log(changed, 4300003)
    assert error.value.reason == "conflicting_copies"


def test_strip_copies_keeps_single_log():
    data = (DATA / "4100001.tzb").read_bytes()
    assert strip_copies(data) == (data, 1)


def test_three_copies_counted():
    data = (DATA / "4300003.tzb").read_bytes()
    start = data.index(b"<BATTLE")
    second = data.index(b"<BATTLE", start + 1)
    block = data[start:second]
    tripled = data[:second] + block + data[second:]
    battle = parse_log(tripled, 4300003)
    assert battle.copies == 3
    assert len(shape(battle).kills) == 1


# FORMS OF THE DOCUMENT


MINIMAL = (
    '<BATTLE t2="1760000130" turn="1" f="C" note="1,2,1760000010">'
    '<USER login="Solo" battleid="7" level="9" side="1"/>'
    '<USER login="$rat1" battleid="7" level="5" side="2"/>'
    "</BATTLE>"
    '<TURN turn="1"><USER login="Solo"><a sf="1" t="5" type="0" login="$rat1" HP="0:30"/>'
    '<a sf="1" t="20" code="7" login="$rat1"/></USER><USER login="$rat1" HP="0"><a sf="1" t="7"/></USER></TURN>'
)


def minimal_summary(text: str) -> dict:
    return battle_summary(parse_log(text.encode(), 7), "main")


def test_bare_fragment_and_wrapper_agree():
    bare = minimal_summary(MINIMAL)
    wrapped = minimal_summary("<BLOOK>" + MINIMAL + "</BLOOK>")
    assert bare == wrapped
    assert bare["participants"][0]["kills_monsters"] == 1
    assert bare["participants"][1]["survived"] is False


def test_turns_nested_in_battle():
    nested = MINIMAL.replace("</BATTLE>", "") + "</BATTLE>"
    assert minimal_summary(nested) == minimal_summary(MINIMAL)


def test_attribute_order_and_quotes():
    reordered = (
        "<BATTLE note='1,2,1760000010' f='C' turn='1' t2='1760000130'>"
        "<USER side='1' level='9' battleid='7' login='Solo'/>"
        '<USER side="2" battleid="7" login="$rat1" level=\'5\'/>'
        "</BATTLE>"
        "<TURN turn='1'><USER login='Solo'><a login='$rat1' HP='0:30' type='0' t='5' sf='1'/>"
        "<a login='$rat1' code='7' t='20' sf='1'/></USER><USER HP='0' login='$rat1'><a t='7' sf='1'/></USER></TURN>"
    )
    assert minimal_summary(reordered) == minimal_summary(MINIMAL)


def test_xml_declaration_and_bom_accepted():
    text = '<?xml version="1.0" encoding="utf-8"?>\n<BLOOK>' + MINIMAL + "</BLOOK>"
    assert minimal_summary(text) == minimal_summary(MINIMAL)


def test_entities_decoded_in_names():
    text = MINIMAL.replace('login="Solo"', 'login="A&amp;B &quot;Q&quot; &lt;3 &#1041;"')
    units = minimal_summary(text)["participants"]
    assert units[0]["login"] == 'A&B "Q" <3 Б'
    assert units[0]["kills_monsters"] == 1


def test_cyrillic_login_and_clan():
    text = MINIMAL.replace('login="Solo" battleid="7"', 'login="Волк" clan="Стая &amp; Ко" battleid="7"')
    text = text.replace('<USER login="Solo">', '<USER login="Волк">')
    wolf = units(parse_log(text.encode(), 7))["Волк"]
    assert wolf["clan"] == "Стая & Ко"
    assert wolf["kills_monsters"] == 1


def test_duplicate_roster_login_flagged():
    text = MINIMAL.replace("</BATTLE>", '<USER login="Solo" battleid="7" level="10" side="1"/></BATTLE>')
    battle = parse_log(text.encode(), 7)
    assert "duplicate_roster_login" in battle.flags
    assert len(battle.participants) == 2
    assert battle.participants[0].level == 10


def test_unknown_markup_counted():
    text = MINIMAL.replace("</BATTLE>", '<BPET owner="Solo"/><MAP v="BB" extra="1"/></BATTLE>')
    text = text.replace('<a sf="1" t="7"/>', '<a sf="1" t="7" mystery="x"/>')
    battle = parse_log(text.encode(), 7)
    assert battle.unknown["<BPET>"] == 1
    assert battle.unknown["MAP@extra"] == 1
    assert battle.unknown["a@mystery"] == 1
    assert "unknown_markup" in battle.flags
    assert battle.map_rows == ["BB"]


def test_bad_numbers_flagged_not_fatal():
    text = MINIMAL.replace('level="9"', 'level="nine"').replace('sf="1" t="7"', 'sf="x" t="7"')
    text = text.replace('HP="0:30"', 'HP="0:3x"')
    battle = parse_log(text.encode(), 7)
    frames = shape(battle)
    assert battle.participants[0].level is None
    assert frames.battles["bad_values"][0] == 3
    assert "bad_values" in frames.battles["flags"][0]
    events = records(frames.events)
    assert events[0]["amount"] is None
    assert events[2]["frame"] is None
    assert events[2]["action"] == 7
    assert battle.bad_values == 1, "shaping does not change the parsed battle"


def test_turn_count_mismatch_flagged():
    text = MINIMAL.replace('turn="1" f="C"', 'turn="4" f="C"')
    battle = parse_log(text.encode(), 7)
    assert "turns_mismatch" in battle.flags


def test_unlisted_late_joiner():
    text = MINIMAL.replace(
        "</TURN>",
        '</TURN><TURN turn="2"><USER login="Helper" sf="3" side="1" level="11" battleid="7">'
        '<O id="1" name="b1" slot="GH"/><a sf="3" t="2"/></USER></TURN>',
    )
    battle = parse_log(text.encode(), 7)
    helper = units(battle)["Helper"]
    assert not helper["in_roster"]
    assert helper["joined_turn"] == 2
    assert helper["joined_frame"] == 3
    assert helper["side"] == 1
    assert helper["level"] == 11


def test_pickup_outside_map_objects():
    text = MINIMAL.replace(
        "</BATTLE>", '<O id="5" txt="Metals" count="3" bx="1" by="1"/></BATTLE>'
    ).replace(
        '<a sf="1" t="20"',
        '<a sf="2" t="8" id="5" txt="Metals" count="3"/><a sf="2" t="8" id="5" txt="Metals" count="3"/>'
        '<a sf="3" t="8" id="9" txt="Gems"/><a sf="1" t="20"',
    )
    battle = parse_log(text.encode(), 7)
    loot = records(shape(battle).loot)
    assert [(row["item_id"], row["qty"], row["on_map"]) for row in loot] == [(5, 3, True), (9, 1, False)]
    assert "unmatched_pickups" in battle.flags
    assert battle_summary(battle, "main")["loot"] == [{"login": "Solo", "item": "Metals", "qty": 3}]


# REJECTED LOGS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (MINIMAL.replace('battleid="7" level="5"', 'battleid="8" level="5"'), "mixed_battle_ids"),
        (MINIMAL.replace('battleid="7"', ""), "missing_battle_id"),
        (MINIMAL.replace('battleid="7" level="9"', 'battleid="seven" level="9"'), "bad_battle_id"),
        ('<TURN turn="1"/>', "no_battle"),
        (MINIMAL[:-30], "truncated"),
        ("<BLOOK>" + MINIMAL, "truncated"),
        (MINIMAL[:200], "truncated"),
        (MINIMAL.replace("</TURN>", "</TURNX>"), "malformed_xml"),
        (MINIMAL.replace('login="Solo"', 'login="A & B"'), "malformed_xml"),
        (MINIMAL.replace('login="Solo"', 'login="&nbsp;"'), "malformed_xml"),
        ("<!DOCTYPE x [<!ENTITY e 'x'>]>" + MINIMAL, "dtd_forbidden"),
        ("<R>" * 40 + MINIMAL + "</R>" * 40, "too_deep"),
        ("<BLOOK>" + MINIMAL.replace("<TURN", "<a>" * 40 + "<TURN") + "</a>" * 40 + "</BLOOK>", "too_deep"),
        ("just text, no XML", "no_battle"),
    ],
)
def test_rejected_logs(text, reason):
    with pytest.raises(Rejected) as error:
        parse_log(text.encode(), 7)
    assert error.value.reason == reason
    assert error.value.detail


def test_file_name_mismatch_rejected():
    with pytest.raises(Rejected, match="file name says battle 4100002, the log says 4100001") as error:
        load("4100001", 4100002)
    assert error.value.reason == "battle_id_mismatch"


def test_truncated_reports_open_element():
    with pytest.raises(Rejected, match="ends inside an open element .*TURN") as error:
        parse_log(("<BLOOK>" + MINIMAL[:-7]).encode(), 7)
    assert error.value.reason == "truncated"


# HIT DESCRIPTORS


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        ("35", (0, 35, None, None, None)),
        ("0:35", (0, 35, None, None, None)),
        ("1:48", (1, 48, None, None, None)),
        ("2:31", (2, 31, None, None, None)),
        ("0:-52", (0, None, None, None, 52)),
        ("0:0", (0, 0, None, None, None)),
        ("0:A7", (0, None, "A", 7, None)),
        ("0:A-15", (0, None, "A", -15, None)),
        ("0:E45", (0, None, "E", 45, None)),
        ("0:19:P6", (0, 19, "P", 6, None)),
        ("1:16:O3", (1, 16, "O", 3, None)),
    ],
)
def test_parse_hit(descriptor, expected):
    assert parse_hit(descriptor) == expected


@pytest.mark.parametrize("descriptor", ["", "x", "0:", "0:1:2", "0:A", "0:1:P", "a:1", "0:1:2:3", "0:P1:2"])
def test_parse_hit_rejects(descriptor):
    with pytest.raises(ValueError):
        parse_hit(descriptor)


@pytest.mark.parametrize(
    ("login", "kind"),
    [
        ("$rat146", "rat"),
        ("$stich14_1337", "sti"),
        ("$sti3", "sti"),
        ("$scrp2", "scr"),
        ("$scr7", "scr"),
        ("$robot1", "robot"),
        ("$rbt1", "rbt"),
        ("$Vzz9", "vzz"),
        ("$zzz1", "unknown"),
        ("$1", "unknown"),
    ],
)
def test_monster_kind(login, kind):
    assert monster_kind(login) == kind
