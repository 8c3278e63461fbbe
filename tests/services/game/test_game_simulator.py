"""The game-server simulator: commands, validation, fault rules, the command record and the CLI."""

import argparse
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from services.game import messages
from services.game.client import GameNoReply, GameRefused, send_admin_command
from services.game.framing import FrameReader, GameProtocolError, encode_frame
from services.game.password import transform_password
from services.game.replies import parse_reply
from services.game.simulator import GameServerSimulator, fold_login, parse_bot, parse_fault


HOST = "127.0.0.1"
HASH = transform_password("qwerty12")
KEY = transform_password("bot-secret")
REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture
def simulator():
    with GameServerSimulator(HOST, 0, bots={"bot1": KEY}, greeting=False) as running:
        yield running


class RawClient:
    """A bare connection that sends frames and parses the replies, for driving the simulator directly."""

    def __init__(self, port, encoding="utf-8"):
        self.sock = socket.create_connection((HOST, port), timeout=2.0)
        self.reader = FrameReader(self.sock, timeout=2.0)
        self.encoding = encoding

    def send(self, text):
        self.sock.sendall(encode_frame(text, self.encoding))

    def ask(self, text):
        self.send(text)
        return parse_reply(self.reader.read_frame(), self.encoding)

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(simulator):
    client = RawClient(simulator.port)
    yield client
    client.close()


def admin(simulator, text, **options):
    options.setdefault("read_timeout", 2.0)
    return send_admin_command(HOST, simulator.port, text, **options)


# -- login folding


@pytest.mark.parametrize(
    "first, second, same",
    [
        ("Player", "player", True),
        ("PLAYER", "player", True),
        ("Ёжик", "ежик", True),
        ("ёжик", "Ежик", True),
        ("Player ", "Player", True),
        ("Йод", "Иод", False),
        ("Player_1", "Player-1", False),
        (" Player", "Player", False),
        ("Страж", "страж", True),
    ],
)
def test_fold_login(first, second, same):
    assert (fold_login(first) == fold_login(second)) is same


def mariadb_equal(first, second):
    connection = pymysql.connect(host=HOST, port=3306, user="root", charset="utf8mb4", connect_timeout=2)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s = %s COLLATE utf8mb4_unicode_ci", (first, second))
            return bool(cursor.fetchone()[0])
    finally:
        connection.close()


@pytest.mark.parametrize(
    "first, second",
    [("Player", "player"), ("Ёжик", "ежик"), ("Player ", "Player"), ("Йод", "Иод"), ("Player_1", "Player-1")],
)
def test_fold_login_matches_mariadb(first, second):
    try:
        expected = mariadb_equal(first, second)
    except pymysql.err.OperationalError as error:
        pytest.skip(f"MariaDB on {HOST}:3306 is not available: {error}")
    assert (fold_login(first) == fold_login(second)) is expected


# -- registration commands


def test_adduser_ids_increase(simulator):
    first = admin(simulator, messages.adduser("One", HASH, 1))
    second = admin(simulator, messages.adduser("Two", HASH, 0))

    assert first.get("id") == "1"
    assert second.get("id") == "2"
    assert [account.login for account in simulator.accounts] == ["One", "Two"]


@pytest.mark.parametrize(
    "existing, new",
    [("Player", "pLaYeR"), ("Ёжик", "ежик"), ("Player", "Player ")],
)
def test_adduser_login_exists_folded(simulator, existing, new):
    simulator.add_account(existing, HASH)

    with pytest.raises(GameRefused) as caught:
        admin(simulator, messages.adduser(new, HASH, 1))
    assert caught.value.code == "LOGIN_EXISTS"
    assert len(simulator.accounts) == 1


def test_adduser_similar_login_allowed(simulator):
    simulator.add_account("Йод", HASH)

    assert admin(simulator, messages.adduser("Иод", HASH, 1)).ok


@pytest.mark.parametrize(
    "frame, field",
    [
        (f'<ADDUSER l="" p="{HASH}" g="1" m="x"/>', "l (login)"),
        (f'<ADDUSER p="{HASH}" g="1"/>', "l (login)"),
        ('<ADDUSER l="A" p="abc" g="1"/>', "p must be"),
        (f'<ADDUSER l="A" p="{HASH.lower()}" g="1"/>', "p must be"),
        (f'<ADDUSER l="A" p="{HASH}" g="2"/>', "g must be"),
        (f'<ADDUSER l="A" p="{HASH}"/>', "g must be"),
    ],
)
def test_adduser_validation(simulator, raw, frame, field):
    reply = raw.ask(frame)

    assert reply.code == "BAD_REQUEST"
    assert field in reply.message
    assert simulator.accounts == []


def test_newpas_validation(raw):
    reply = raw.ask('<NEWPAS l="Player" pwd2="short"/>')

    assert reply.code == "BAD_REQUEST"


def test_users_writer_receives_account(simulator):
    written = []
    simulator.users_writer = written.append

    admin(simulator, messages.adduser("Player", HASH, 0, "a@b.c"))

    assert len(written) == 1
    assert written[0].login == "Player"
    assert written[0].gender == 0
    assert written[0].email == "a@b.c"
    assert written[0].password_hash == HASH


def test_users_writer_failure_keeps_no_account(simulator, caplog):
    def fail(account):
        raise RuntimeError("users table is read-only")

    simulator.users_writer = fail

    with caplog.at_level(logging.ERROR, logger="services.game.simulator"):
        with pytest.raises(GameRefused) as caught:
            admin(simulator, messages.adduser("Player", HASH, 1))
    assert caught.value.code == "INTERNAL"
    assert simulator.find_account("Player") is None
    assert "users table is read-only" in caplog.text


# -- session commands


def test_login_with_created_account(simulator, raw):
    simulator.add_account("Player", HASH)

    reply = raw.ask(messages.login("player", HASH))

    assert reply.ok
    assert reply.get("l") == "Player"


def test_login_with_new_password_after_newpas(simulator, raw):
    simulator.add_account("Player", HASH)
    new_hash = transform_password("another1")
    admin(simulator, messages.newpas("Player", new_hash))

    assert raw.ask(messages.login("Player", HASH)).code == "LOGIN_FAILED"
    assert raw.ask(messages.login("Player", new_hash)).ok


@pytest.mark.parametrize(
    "text",
    [messages.getme(), messages.getmybattle(), messages.blook(1), messages.shop_page("a", "", 0)],
)
def test_session_commands_need_login(raw, text):
    assert raw.ask(text).code == "NOT_LOGGED_IN"


def test_failed_login_logs_out(raw):
    assert raw.ask(messages.login("bot1", KEY)).ok
    assert raw.ask(messages.login("bot1", HASH)).code == "LOGIN_FAILED"
    assert raw.ask(messages.getme()).code == "NOT_LOGGED_IN"


def test_getmybattle_without_blook(raw):
    raw.ask(messages.login("bot1", KEY))

    reply = raw.ask(messages.getmybattle())

    assert reply.code == "NOT_FOUND"
    assert "//blook" in reply.message


def test_getmybattle_without_logs_folder(raw):
    raw.ask(messages.login("bot1", KEY))
    raw.send(messages.blook(5))

    assert raw.ask(messages.getmybattle()).code == "NOT_FOUND"


def test_keepalive_and_chat_get_no_reply(raw):
    raw.ask(messages.login("bot1", KEY))
    raw.send(messages.keepalive())
    raw.send(messages.chat("hello"))

    # The next reply read is GETME's, so N and POST sent nothing.
    assert raw.ask(messages.getme()).tag == "MYPARAM"


def test_unknown_command(raw):
    reply = raw.ask("<FLY to='moon'/>")

    assert reply.code == "UNKNOWN_COMMAND"
    assert "FLY" in reply.message


def test_invalid_xml(simulator, raw):
    reply = raw.ask("this is <<< not xml")

    assert reply.code == "BAD_XML"
    assert simulator.commands()[-1].tag == ""


def test_shop_page_rejects_path_in_category(tmp_path):
    (tmp_path / "secret.xml").write_text("<SECRET/>")
    (tmp_path / "a").mkdir()
    with GameServerSimulator(HOST, 0, bots={"bot1": KEY}, shop_dir=tmp_path / "a", greeting=False) as simulator:
        client = RawClient(simulator.port)
        try:
            client.ask(messages.login("bot1", KEY))
            reply = client.ask('<SH c=".." s="" p="0"/>')
        finally:
            client.close()

    assert reply.tag == "SH"
    assert reply.get("c") == ".."
    assert len(reply.element) == 0


def test_greeting_sent_on_connect():
    with GameServerSimulator(HOST, 0) as simulator:
        client = RawClient(simulator.port)
        try:
            greeting = parse_reply(client.reader.read_frame())
        finally:
            client.close()

    assert greeting.tag == "KEY"
    assert len(greeting.get("s")) == 16


def test_cp1251_server_reads_cp1251(raw):
    with GameServerSimulator(HOST, 0, encoding="cp1251", greeting=False) as simulator:
        client = RawClient(simulator.port, encoding="cp1251")
        try:
            reply = client.ask(messages.adduser("Странник", HASH, 1))
        finally:
            client.close()
        assert simulator.find_account("странник").login == "Странник"
    assert reply.ok


# -- faults and the command record


def test_fault_count_runs_out(simulator):
    simulator.set_fault("drop", commands={"ADDUSER"}, count=1)

    with pytest.raises(GameNoReply):
        admin(simulator, messages.adduser("One", HASH, 1))
    assert admin(simulator, messages.adduser("Two", HASH, 1)).ok


def test_fault_limited_to_commands(simulator):
    simulator.set_fault("drop", commands={"NEWPAS"})

    assert admin(simulator, messages.adduser("One", HASH, 1)).ok
    with pytest.raises(GameNoReply):
        admin(simulator, messages.newpas("One", HASH))


def test_ok_rule_lets_commands_through_first(simulator):
    simulator.add_fault("ok", commands={"ADDUSER"}, count=1)
    simulator.add_fault("drop", commands={"ADDUSER"})

    assert admin(simulator, messages.adduser("One", HASH, 1)).ok
    with pytest.raises(GameNoReply):
        admin(simulator, messages.adduser("Two", HASH, 1))
    with pytest.raises(GameNoReply):
        admin(simulator, messages.adduser("Three", HASH, 1))


def test_set_fault_replaces_rules(simulator):
    simulator.add_fault("drop")
    simulator.set_fault("garbage", commands={"NEWPAS"})

    assert admin(simulator, messages.adduser("One", HASH, 1)).ok


def test_half_frame_and_garbage_apply_flag(simulator):
    simulator.set_fault("half_frame", commands={"ADDUSER"}, apply=False)
    with pytest.raises(GameNoReply):
        admin(simulator, messages.adduser("One", HASH, 1))

    simulator.set_fault("garbage", commands={"ADDUSER"}, apply=True)
    with pytest.raises(GameProtocolError):
        admin(simulator, messages.adduser("Two", HASH, 1))

    assert simulator.find_account("One") is None
    assert simulator.find_account("Two") is not None


def test_fault_arguments_checked(simulator):
    with pytest.raises(ValueError, match="unknown fault mode"):
        simulator.set_fault("explode")
    with pytest.raises(ValueError, match="count"):
        simulator.add_fault("drop", count=0)
    with pytest.raises(ValueError, match="needs a delay"):
        simulator.add_fault("slow")
    with pytest.raises(ValueError, match="refuse"):
        simulator.set_fault("refuse", commands={"ADDUSER"})
    with pytest.raises(ValueError, match="set_fault"):
        simulator.add_fault("refuse")


def test_refuse_keeps_port(simulator):
    port = simulator.port
    simulator.set_fault("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=1.0).close()

    simulator.clear_faults()

    assert simulator.port == port
    assert admin(simulator, messages.adduser("One", HASH, 1)).ok


def test_record_masks_secrets(simulator):
    simulator.add_account("Player", HASH)
    admin(simulator, messages.newpas("Player", HASH))
    admin(simulator, messages.adduser("Other", HASH, 1))

    records = simulator.commands()
    assert [record.tag for record in records] == ["NEWPAS", "ADDUSER"]
    assert records[0].attributes == {"l": "Player", "pwd2": "***"}
    assert records[1].attributes["p"] == "***"
    assert records[1].outcome.startswith("OK")
    assert all(HASH not in str(record) for record in records)


def test_log_lines_hide_secrets(simulator, caplog):
    with caplog.at_level(logging.INFO, logger="services.game.simulator"):
        admin(simulator, messages.adduser("Player", HASH, 1))
        admin(simulator, messages.newpas("Player", KEY))
        client = RawClient(simulator.port)
        try:
            client.ask(messages.login("bot1", KEY))
            client.ask(f'<ADDUSER l="x" p="{HASH}" broken')
        finally:
            client.close()

    assert "ADDUSER" in caplog.text
    assert HASH not in caplog.text
    assert KEY not in caplog.text


def test_commands_filter_and_clear(simulator):
    admin(simulator, messages.adduser("One", HASH, 1))
    admin(simulator, messages.newpas("One", HASH))

    assert simulator.count_commands("ADDUSER") == 1
    assert [record.tag for record in simulator.commands("NEWPAS")] == ["NEWPAS"]
    simulator.clear_commands()
    assert simulator.commands() == []


def test_stop_closes_open_connections():
    simulator = GameServerSimulator(HOST, 0, greeting=False).start()
    client = RawClient(simulator.port)
    deadline = time.monotonic() + 2.0
    while simulator.open_connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert simulator.open_connections == 1
    started = time.monotonic()
    simulator.stop()

    assert time.monotonic() - started < 2.0
    assert client.sock.recv(10) == b""
    client.close()


# -- command line


def test_parse_fault_spec():
    assert parse_fault("slow,commands=ADDUSER+NEWPAS,count=2,delay=1.5,apply=no") == {
        "mode": "slow",
        "commands": ["ADDUSER", "NEWPAS"],
        "count": 2,
        "delay": 1.5,
        "apply": False,
    }
    assert parse_fault("refuse") == {"mode": "refuse"}


@pytest.mark.parametrize("spec", ["explode", "drop,count=x", "drop,when=now", "drop,apply=maybe", "drop,count"])
def test_parse_fault_rejects(spec):
    with pytest.raises(argparse.ArgumentTypeError, match="fault"):
        parse_fault(spec)


def test_parse_bot_spec():
    assert parse_bot(f"bot:one:{KEY}") == ("bot:one", KEY)
    with pytest.raises(argparse.ArgumentTypeError, match="LOGIN:KEY"):
        parse_bot("bot1:short")


def test_simulator_process_answers_and_stops(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "services.game.simulator",
            "--host",
            HOST,
            "--port",
            "0",
            "--bot",
            f"bot1:{KEY}",
            "--fault",
            "drop,commands=NEWPAS,count=1",
            "--logs",
            str(tmp_path),
        ],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"listening on {HOST}:"), process.stderr.read() if process.poll() is not None else line
        port = int(line.rsplit(":", 1)[1])

        reply = send_admin_command(HOST, port, messages.adduser("Player", HASH, 1), read_timeout=5.0)
        with pytest.raises(GameNoReply):
            send_admin_command(HOST, port, messages.newpas("Player", HASH), read_timeout=5.0)
    finally:
        process.terminate()
        try:
            stdout, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()

    assert reply.ok
    assert process.returncode == 0
    assert "ADDUSER" in stderr
    assert "fault drop" in stderr
    assert HASH not in stderr
    assert HASH not in stdout


def test_simulator_process_rejects_bad_encoding():
    completed = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "services.game.simulator", "--port", "0", "--encoding", "utf-16"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2
    assert "not supported" in completed.stderr
