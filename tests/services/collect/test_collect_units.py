"""Collection pieces without servers: id plans, the bots secret, settings, retry rules."""

import pytest
from nameko.exceptions import ConfigurationError

from services.game.bots import parse_bot_accounts
from services.game.client import BattleIdMismatch, GameConnectFailed, GameLoginFailed, GameNoReply, GameRefused
from services.game.framing import GameProtocolError
from services.game.password import transform_password
from services.game.replies import parse_reply
from services.ingest.collection.fetcher import is_transient
from services.ingest.collection.jobs import should_skip
from services.ingest.collection.plan import DONE, FETCH, HEAD, WAIT, ForwardPlan, IdPlan
from services.ingest.collection.settings import CollectSettings
from services.ingest.collection.store import StoredStatus


KEY = transform_password("collector-one")
OTHER_KEY = transform_password("collector-two")


def take_all(plan) -> list[int]:
    ids = []
    while (action := plan.next_action()).kind == FETCH:
        ids.append(action.battle_id)
    return ids


# -- plans


def test_range_plan_ascending_and_cursor():
    plan = IdPlan(10, 14, 1)

    assert take_all(plan) == [10, 11, 12, 13, 14]
    plan.done(12, "fetched")
    assert plan.cursor == 10
    plan.done(10, "not_found")
    plan.done(11, "failed")
    assert plan.cursor == 13
    assert plan.next_action().kind == WAIT
    plan.done(14, "fetched")
    plan.done(13, "mismatch")
    assert plan.cursor == 15
    assert plan.next_action().kind == DONE


def test_backward_plan_descends_to_last():
    plan = IdPlan(5, 3, -1)

    assert take_all(plan) == [5, 4, 3]
    for battle_id in (3, 5, 4):
        plan.done(battle_id, "fetched")
    assert plan.cursor == 2
    assert plan.next_action().kind == DONE


def test_given_back_id_handed_out_again_first():
    plan = IdPlan(1, 3, 1)
    assert plan.next_action().battle_id == 1
    assert plan.next_action().battle_id == 2

    plan.give_back(1)
    plan.done(2, "fetched")

    assert plan.cursor == 1
    assert plan.next_action().battle_id == 1
    assert plan.next_action().battle_id == 3


def test_forward_plan_waits_at_head():
    plan = ForwardPlan(100, None, head_misses=3, newest=99)

    assert take_all_until(plan, 5) == [100, 101, 102, 103, 104]
    for battle_id, status in ((100, "fetched"), (101, "not_found"), (102, "not_found"), (103, "not_found")):
        plan.done(battle_id, status)
    # 104 is in flight and may still exist.
    assert plan.next_action().kind == WAIT
    plan.done(104, "not_found")

    assert plan.next_action().kind == HEAD
    assert plan.resume_id == 101
    plan.reprobe()
    action = plan.next_action()
    assert (action.kind, action.battle_id, action.force) == (FETCH, 101, True)


def take_all_until(plan, count) -> list[int]:
    return [plan.next_action().battle_id for _ in range(count)]


def test_forward_plan_leaves_gap_behind_fetched_id():
    plan = ForwardPlan(100, None, head_misses=3, newest=99)
    ids = take_all_until(plan, 4)

    plan.done(ids[0], "not_found")
    plan.done(ids[1], "not_found")
    plan.done(ids[2], "fetched")
    plan.done(ids[3], "fetched")

    assert plan.missing_from is None
    assert plan.newest == 103
    assert plan.resume_id == 104
    action = plan.next_action()
    assert (action.battle_id, action.force) == (104, True)


def test_forward_plan_ignores_old_missing_ids():
    """Ids at or below the newest known battle are behind the head."""
    plan = ForwardPlan(50, None, head_misses=2, newest=60)
    actions = [plan.next_action() for _ in range(3)]

    assert [action.force for action in actions] == [False, False, False]
    for action in actions:
        plan.done(action.battle_id, "not_found")
    assert plan.missing_from is None
    assert plan.next_action().kind == FETCH


def test_bounded_forward_plan_waits_for_trailing_missing_ids():
    plan = ForwardPlan(10, 12, head_misses=5, newest=None)
    assert take_all(plan) == [10, 11, 12]
    plan.done(10, "fetched")
    plan.done(11, "fetched")
    plan.done(12, "not_found")

    assert plan.next_action().kind == HEAD
    plan.reprobe()
    assert plan.next_action().battle_id == 12
    plan.done(12, "fetched")
    assert plan.next_action().kind == DONE


# -- skip and retry rules


@pytest.mark.parametrize(
    "status, job_id, force, skip",
    [
        ("fetched", 1, False, True),
        ("fetched", 2, True, True),
        ("not_found", 1, False, True),
        ("not_found", 1, True, False),
        ("failed", 2, False, False),
        ("failed", 1, False, True),
        ("mismatch", 2, False, False),
        ("mismatch", 1, True, True),
    ],
)
def test_should_skip(status, job_id, force, skip):
    assert should_skip(StoredStatus(status, job_id), 1, force) is skip


def test_transient_errors():
    refused = GameRefused(parse_reply(b'<ERROR code="NOT_FOUND"/>'))
    login_failed = GameLoginFailed(parse_reply(b'<ERROR code="LOGIN_FAILED"/>'))

    assert is_transient(GameConnectFailed("refused"))
    assert is_transient(GameNoReply("timed out", "timeout"))
    assert is_transient(GameProtocolError("garbage"))
    assert not is_transient(refused)
    assert not is_transient(login_failed)
    assert not is_transient(BattleIdMismatch(5, 6))
    assert not is_transient(ValueError("bug"))


# -- the bots secret


def test_bot_accounts_lines_and_commas():
    text = f"# collectors\nСборщик Ёж:{KEY}\n\n second :{OTHER_KEY} , third:{KEY}\n"

    accounts = parse_bot_accounts(text)

    assert [account.login for account in accounts] == ["Сборщик Ёж", "second", "third"]
    assert accounts[0].key == KEY
    assert KEY not in repr(accounts[0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("no-colon-here", "entry 1 is not login:KEY"),
        (f":{KEY}", "entry 1 is not login:KEY"),
        ("bot:ABCDEF0123", r"the key of entry 1 \(login 'bot'\) must be 40 uppercase"),
        (f"bot:{KEY.lower()}", "the key of entry 1"),
        (f"bot:{KEY},Bot:{OTHER_KEY}", "entry 2 repeats the login 'Bot' of entry 1"),
        (f"ёж:{KEY}\nЕЖ:{OTHER_KEY}", "entry 2 repeats"),
        ("  \n# only a comment\n", "contains no login:KEY entry"),
    ],
)
def test_bot_accounts_rejected_without_key(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_bot_accounts(text, "secret TZR_COLLECT_BOTS")

    assert "ABCDEF0123" not in str(caught.value)
    assert KEY not in str(caught.value)
    assert KEY.lower() not in str(caught.value)


# -- settings


def test_settings_without_secret_turn_collection_off(monkeypatch):
    monkeypatch.delenv("TZR_COLLECT_BOTS", raising=False)
    monkeypatch.delenv("TZR_COLLECT_BOTS_FILE", raising=False)

    settings = CollectSettings.from_config({"COLLECT": {"game_port": 5190}})

    assert not settings.enabled
    assert settings.attempts == 4


def test_settings_read_bots_file(monkeypatch, tmp_path):
    path = tmp_path / "bots"
    path.write_text(f"Бот:{KEY}\nbot2:{OTHER_KEY}\n", encoding="utf-8")
    monkeypatch.delenv("TZR_COLLECT_BOTS", raising=False)
    monkeypatch.setenv("TZR_COLLECT_BOTS_FILE", str(path))

    settings = CollectSettings.from_config({"COLLECT": {"game_port": 5190, "floor": "1000"}})

    assert [bot.login for bot in settings.bots] == ["Бот", "bot2"]
    assert settings.floor == 1000
    assert settings.bot_settings(settings.bots[0]).read_retries == 0
    assert KEY not in repr(settings)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attempts": 0}, "COLLECT.attempts must be an integer from 1"),
        ({"poll_interval": "soon"}, "COLLECT.poll_interval must be a positive number of seconds"),
        ({"floor": -5}, "COLLECT.floor must be an integer from 1"),
        ({"game_encoding": "koi8-r"}, "COLLECT.game_encoding must be utf-8 or cp1251"),
        ({"auto_forward": "maybe"}, "COLLECT.auto_forward must be true or false"),
        ({"floor": 100, "forward_start": 50}, "forward_start \\(50\\) is below COLLECT.floor"),
    ],
)
def test_settings_rejected(monkeypatch, overrides, message):
    monkeypatch.setenv("TZR_COLLECT_BOTS", f"bot:{KEY}")
    with pytest.raises(ConfigurationError, match=message):
        CollectSettings.from_config({"COLLECT": {"game_port": 5190, **overrides}})


def test_auto_forward_needs_bots(monkeypatch):
    monkeypatch.delenv("TZR_COLLECT_BOTS", raising=False)
    monkeypatch.delenv("TZR_COLLECT_BOTS_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="auto_forward is on, but the secret TZR_COLLECT_BOTS is not set"):
        CollectSettings.from_config({"COLLECT": {"auto_forward": True}})
