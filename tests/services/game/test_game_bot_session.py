"""BotSession against the simulator: login, battle logs, shop pages, keep-alive and reconnection."""

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.game.client import (
    BattleIdMismatch,
    BotSession,
    BotSettings,
    GameConnectFailed,
    GameLoginFailed,
    GameNoReply,
    GameRefused,
)
from services.game.framing import GameError, GameProtocolError
from services.game.password import transform_password
from services.game.simulator import GameServerSimulator


HOST = "127.0.0.1"
KEY = transform_password("bot-secret")
REPOSITORY = Path(__file__).resolve().parents[3]
LOG_SOURCE = REPOSITORY / "tests" / "pipelines" / "data" / "4100001.tzb"
BATTLE_ID = 4100001


@pytest.fixture
def logs_dir(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / f"{BATTLE_ID}.tzb").write_bytes(LOG_SOURCE.read_bytes())
    return folder


@pytest.fixture
def shop_dir(tmp_path):
    folder = tmp_path / "shop"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "0.xml").write_text(
        '<SH c="a" s="" p="0" m="2"><O id="880001" txt="Plasma cell"/><O txt="9mm rounds" count="4"/></SH>\n',
        encoding="utf-8",
    )
    (folder / "a" / "1.xml").write_text('<SH c="b" s="" p="1" m="0"/>', encoding="utf-8")
    return folder


@pytest.fixture
def simulator(logs_dir, shop_dir):
    # Small write pieces make the client reassemble every log from many reads.
    with GameServerSimulator(
        HOST, 0, bots={"bot1": KEY}, logs_dir=logs_dir, shop_dir=shop_dir, write_chunk_bytes=512
    ) as running:
        yield running


def settings_for(simulator, **overrides):
    values = dict(
        host=HOST,
        port=simulator.port,
        login="bot1",
        key=KEY,
        connect_timeout=2.0,
        read_timeout=2.0,
        greeting_timeout=1.0,
        getme_timeout=1.0,
        battle_timeout=3.0,
        reconnect_attempts=3,
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.2,
        blook_pause=0.0,
    )
    values.update(overrides)
    return BotSettings(**values)


@pytest.fixture
def session(simulator):
    bot = BotSession(settings_for(simulator))
    yield bot
    bot.close()


def wait_until(condition, timeout=3.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# -- login


def test_login_reads_greeting_and_myparam(session, simulator):
    session.connect()

    assert session.connected
    assert session.server_key
    assert session.login_reply["ses"]
    assert session.my_param == {"login": "bot1", "level": "10"}
    assert [command.tag for command in simulator.commands()] == ["LOGIN", "GETME"]
    assert simulator.commands("LOGIN")[0].attributes["p"] == "***"


def test_login_without_greeting(logs_dir):
    with GameServerSimulator(HOST, 0, bots={"bot1": KEY}, greeting=False) as simulator:
        with BotSession(settings_for(simulator, greeting_timeout=0.1)) as bot:
            assert bot.connected
            assert bot.server_key is None
            assert bot.my_param["login"] == "bot1"


def test_login_without_waiting_for_greeting(simulator):
    with BotSession(settings_for(simulator, greeting_timeout=0)) as bot:
        assert bot.connected
        assert bot.server_key
        assert bot.my_param["level"] == "10"


def test_wrong_key_is_login_error(simulator):
    bot = BotSession(settings_for(simulator, key=transform_password("wrong")))

    with pytest.raises(GameLoginFailed) as caught:
        bot.connect()
    assert caught.value.code == "LOGIN_FAILED"
    assert "check the login and key" in str(caught.value)
    assert not bot.connected
    assert simulator.count_commands("LOGIN") == 1
    bot.close()


def test_unknown_login_is_login_error(simulator):
    with pytest.raises(GameLoginFailed):
        BotSession(settings_for(simulator, login="stranger")).connect()


def test_cyrillic_bot_in_cp1251(logs_dir):
    with GameServerSimulator(HOST, 0, bots={"Бот Ёж": KEY}, encoding="cp1251") as simulator:
        with BotSession(settings_for(simulator, login="Бот Ёж", encoding="cp1251")) as bot:
            assert bot.my_param["login"] == "Бот Ёж"
        assert simulator.commands("LOGIN")[0].attributes["l"] == "Бот Ёж"


def test_server_down_is_connect_failure(simulator):
    simulator.set_fault("refuse")
    bot = BotSession(settings_for(simulator, reconnect_attempts=2))

    started = time.monotonic()
    with pytest.raises(GameConnectFailed, match="after 2 attempts"):
        bot.connect()
    assert time.monotonic() - started < 2.0
    assert simulator.connections_accepted == 0


def test_login_waits_for_server_with_backoff(simulator):
    simulator.set_fault("refuse")
    bot = BotSession(settings_for(simulator, reconnect_attempts=8, reconnect_initial_delay=0.05))
    timer = threading.Timer(0.2, simulator.set_fault, args=("ok",))
    timer.start()
    try:
        bot.connect()
        assert bot.connected
    finally:
        timer.join()
        bot.close()


def test_settings_reject_bad_key():
    with pytest.raises(ValueError, match="key"):
        BotSettings(HOST, 5190, "bot1", "not-a-key")


def test_settings_repr_hides_key():
    assert KEY not in repr(BotSettings(HOST, 5190, "bot1", KEY))


def test_closed_session_refuses_requests(simulator):
    bot = BotSession(settings_for(simulator))
    bot.close()

    with pytest.raises(GameError, match="closed"):
        bot.fetch_battle(BATTLE_ID)


# -- battle logs


def test_fetch_battle_returns_log(session, simulator):
    data = session.fetch_battle(BATTLE_ID)

    assert data == LOG_SOURCE.read_bytes().strip()
    assert data.startswith(b"<BLOOK>")
    assert data.endswith(b"</BLOOK>")
    assert b"\x00" not in data
    assert [command.tag for command in simulator.commands()][-2:] == ["POST", "GETMYBATTLE"]
    assert simulator.commands("POST")[0].attributes["t"] == f"//blook {BATTLE_ID}"


def test_fetch_sharded_gzip_log(tmp_path):
    body = LOG_SOURCE.read_bytes().strip()
    unwrapped = body[len(b"<BLOOK>") : -len(b"</BLOOK>")]
    shard = tmp_path / str(BATTLE_ID // 50000)
    shard.mkdir()
    with gzip.open(shard / f"{BATTLE_ID}.tzb.gz", "wb") as stream:
        stream.write(unwrapped)

    with GameServerSimulator(HOST, 0, bots={"bot1": KEY}, logs_dir=tmp_path) as simulator:
        with BotSession(settings_for(simulator)) as bot:
            data = bot.fetch_battle(BATTLE_ID)

    assert data == b"<BLOOK>" + unwrapped.strip() + b"</BLOOK>"


def test_fetch_battle_split_over_frames(logs_dir):
    with GameServerSimulator(HOST, 0, bots={"bot1": KEY}, logs_dir=logs_dir, log_frames=3) as simulator:
        with BotSession(settings_for(simulator)) as bot:
            data = bot.fetch_battle(BATTLE_ID)

    assert data == LOG_SOURCE.read_bytes().strip()


def test_fetch_missing_battle_is_refused(session):
    with pytest.raises(GameRefused) as caught:
        session.fetch_battle(999)
    assert caught.value.code == "NOT_FOUND"
    assert session.connected
    assert session.connections_opened == 1


def test_fetch_battle_detects_other_battle(session, logs_dir):
    (logs_dir / "4100002.tzb").write_bytes(LOG_SOURCE.read_bytes())

    with pytest.raises(BattleIdMismatch) as caught:
        session.fetch_battle(4100002)
    assert caught.value.requested == 4100002
    assert caught.value.found == BATTLE_ID
    assert isinstance(caught.value, GameProtocolError)


def test_fetch_battle_without_battle_id(session, logs_dir):
    (logs_dir / "4100003.tzb").write_bytes(b"<BLOOK><BATTLE t='40'></BATTLE></BLOOK>")

    with pytest.raises(BattleIdMismatch) as caught:
        session.fetch_battle(4100003)
    assert caught.value.found is None


def test_session_usable_after_mismatch(session, logs_dir):
    (logs_dir / "4100002.tzb").write_bytes(LOG_SOURCE.read_bytes())
    with pytest.raises(BattleIdMismatch):
        session.fetch_battle(4100002)

    assert session.fetch_battle(BATTLE_ID).startswith(b"<BLOOK>")


def test_concurrent_fetches_take_turns(session):
    results = []
    errors = []

    def fetch():
        try:
            results.append(session.fetch_battle(BATTLE_ID))
        except Exception as error:  # noqa: BLE001 -- collected for the assert below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert len(results) == 4
    assert all(result == LOG_SOURCE.read_bytes().strip() for result in results)
    assert session.connections_opened == 1


# -- shop pages


def test_shop_page(session):
    reply = session.shop_page("a", "", 0)

    assert reply.tag == "SH"
    assert reply.get("m") == "2"
    assert [child.get("txt") for child in reply.element] == ["Plasma cell", "9mm rounds"]


def test_missing_shop_page_is_empty(session):
    reply = session.shop_page("zz", "name:x,type:1", 4)

    assert reply.tag == "SH"
    assert reply.get("c") == "zz"
    assert reply.get("p") == "4"
    assert len(reply.element) == 0


def test_shop_page_for_other_category_rejected(session):
    with pytest.raises(GameProtocolError, match="c='b'"):
        session.shop_page("a", "", 1)


# -- keep-alive and reconnection


def test_keepalive_sent_while_idle(simulator):
    with BotSession(settings_for(simulator, keepalive_interval=0.2)) as bot:
        assert wait_until(lambda: simulator.count_commands("N") >= 2)
        time.sleep(0.1)
        sent = bot.keepalives_sent

    assert sent >= 2
    # About one every 0.2 s; a loop that spins would send far more.
    assert sent <= 6


def test_no_keepalive_while_busy(simulator):
    with BotSession(settings_for(simulator, keepalive_interval=5.0)) as bot:
        for _ in range(3):
            bot.fetch_battle(BATTLE_ID)
        time.sleep(0.2)

    assert simulator.count_commands("N") == 0


def test_keepalive_notices_drop(simulator):
    with BotSession(settings_for(simulator, keepalive_interval=0.2)) as bot:
        simulator.drop_connections()
        assert wait_until(lambda: not bot.connected)


def test_reconnect_after_server_drops_connection(session, simulator):
    session.connect()
    simulator.drop_connections()
    assert wait_until(lambda: simulator.open_connections == 0)

    data = session.fetch_battle(BATTLE_ID)

    assert data.startswith(b"<BLOOK>")
    assert session.connections_opened == 2
    assert simulator.count_commands("LOGIN") == 2
    # The closed connection was noticed before sending, so nothing was sent twice.
    assert simulator.count_commands("POST") == 1


def test_reconnect_after_drop_without_retries(simulator):
    with BotSession(settings_for(simulator, read_retries=0, keepalive_interval=60)) as bot:
        simulator.drop_connections()
        assert wait_until(lambda: simulator.open_connections == 0)

        assert bot.shop_page("a", "", 0).get("m") == "2"
        assert bot.connections_opened == 2


def test_fetch_retried_after_drop_fault(session, simulator):
    session.connect()
    simulator.set_fault("drop", commands={"GETMYBATTLE"}, count=1)

    data = session.fetch_battle(BATTLE_ID)

    assert data.startswith(b"<BLOOK>")
    assert simulator.count_commands("GETMYBATTLE") == 2
    assert simulator.count_commands("LOGIN") == 2


def test_fetch_gives_up_after_retries(session, simulator):
    simulator.set_fault("drop", commands={"GETMYBATTLE"})

    with pytest.raises(GameNoReply) as caught:
        session.fetch_battle(BATTLE_ID)
    assert caught.value.reason == "closed"
    # One try and one retry (read_retries=1).
    assert simulator.count_commands("GETMYBATTLE") == 2


def test_half_frame_reply_retried(session, simulator):
    simulator.set_fault("half_frame", commands={"GETMYBATTLE"}, count=1)

    assert session.fetch_battle(BATTLE_ID).endswith(b"</BLOOK>")
    assert simulator.count_commands("GETMYBATTLE") == 2


def test_garbage_reply_reconnects(session, simulator):
    simulator.set_fault("garbage", commands={"SH"}, count=1)

    with pytest.raises(GameProtocolError):
        session.shop_page("a", "", 0)
    assert not session.connected
    assert session.shop_page("a", "", 0).get("m") == "2"


def test_timeout_drops_connection(simulator):
    simulator.set_fault("slow", commands={"SH"}, count=1, delay=0.6)
    bot = BotSession(settings_for(simulator, read_timeout=0.3, read_retries=0))
    try:
        with pytest.raises(GameNoReply) as caught:
            bot.shop_page("a", "", 0)
        assert caught.value.reason == "timeout"
        assert not bot.connected

        reply = bot.shop_page("zz", "", 0)
        assert reply.get("c") == "zz"
        assert bot.connections_opened == 2
    finally:
        bot.close()


def test_request_with_custom_tags(session):
    reply = session.request("<GETME/>", {"MYPARAM"})

    assert reply.get("login") == "bot1"


def test_request_error_reply_raised(session):
    with pytest.raises(GameRefused) as caught:
        session.request("<NOSUCH/>", {"OK"})
    assert caught.value.code == "UNKNOWN_COMMAND"


def test_request_error_tag_requested(session):
    reply = session.request("<NOSUCH/>", {"ERROR"})

    assert reply.code == "UNKNOWN_COMMAND"


PLAIN_THREADS_SCRIPT = """
import json, sys, time
from pathlib import Path
from services.game.client import BotSession, BotSettings
from services.game.password import transform_password
from services.game.simulator import GameServerSimulator

key = transform_password("bot-secret")
logs = Path(sys.argv[1])
with GameServerSimulator("127.0.0.1", 0, bots={"bot1": key}, logs_dir=logs) as simulator:
    settings = BotSettings("127.0.0.1", simulator.port, "bot1", key, keepalive_interval=0.2, blook_pause=0)
    with BotSession(settings) as bot:
        size = len(bot.fetch_battle(4100001))
        time.sleep(0.5)
        result = {"size": size, "keepalives": simulator.count_commands("N")}
import eventlet.patcher
result["patched"] = eventlet.patcher.is_monkey_patched("socket")
print(json.dumps(result))
"""


def test_session_in_plain_threads(logs_dir):
    """The same code without eventlet's monkey-patching, in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PLAIN_THREADS_SCRIPT, str(logs_dir)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["patched"] is False
    assert result["size"] == len(LOG_SOURCE.read_bytes().strip())
    assert result["keepalives"] >= 1
