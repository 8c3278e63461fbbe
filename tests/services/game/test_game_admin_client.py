"""ADDUSER and NEWPAS through send_admin_command and AdminClient, against the simulator's faults."""

import socket
import threading

import pytest

from services.game import client as client_module
from services.game import messages
from services.game.client import (
    AdminClient,
    GameConnectFailed,
    GameNoReply,
    GameRefused,
    retry_connect_failures,
    send_admin_command,
)
from services.game.framing import GameProtocolError
from services.game.password import transform_password
from services.game.simulator import GameServerSimulator


HASH = transform_password("qwerty12")
HOST = "127.0.0.1"


@pytest.fixture
def simulator():
    with GameServerSimulator(HOST, 0) as running:
        yield running


def send(simulator, text, **options):
    options.setdefault("read_timeout", 2.0)
    options.setdefault("connect_timeout", 2.0)
    return send_admin_command(HOST, simulator.port, text, **options)


def test_adduser_success(simulator):
    reply = send(simulator, messages.adduser("Player", HASH, 1))

    assert reply.ok
    assert reply.get("id") == "1"
    assert simulator.find_account("Player").gender == 1
    assert simulator.count_commands("ADDUSER") == 1


def test_adduser_login_exists(simulator):
    simulator.add_account("Player", HASH)

    with pytest.raises(GameRefused) as caught:
        send(simulator, messages.adduser("PLAYER", HASH, 0))
    assert caught.value.code == "LOGIN_EXISTS"
    assert caught.value.reply.tag == "ERROR"
    assert "LOGIN_EXISTS" in str(caught.value)
    assert not caught.value.retry_safe


def test_greeting_before_reply_skipped():
    with GameServerSimulator(HOST, 0, greeting=True) as simulator:
        assert send(simulator, messages.adduser("Player", HASH, 1)).ok


def test_reply_without_greeting():
    with GameServerSimulator(HOST, 0, greeting=False) as simulator:
        assert send(simulator, messages.adduser("Player", HASH, 1)).ok


def test_newpas_existing_and_missing(simulator):
    simulator.add_account("Player", HASH)
    new_hash = transform_password("another1")

    assert send(simulator, messages.newpas("player", new_hash)).ok
    assert simulator.find_account("Player").password_hash == new_hash
    with pytest.raises(GameRefused) as caught:
        send(simulator, messages.newpas("Nobody", new_hash))
    assert caught.value.code == "NO_SUCH_USER"


def test_no_reply_expected(simulator):
    assert send(simulator, messages.newpas("Nobody", HASH), expect_reply=False) is None


def test_refused_connection(simulator):
    simulator.set_fault("refuse")

    with pytest.raises(GameConnectFailed) as caught:
        send(simulator, messages.adduser("Player", HASH, 1))
    assert caught.value.retry_safe
    assert simulator.count_commands("ADDUSER") == 0


def test_refuse_cleared_accepts_again(simulator):
    simulator.set_fault("refuse")
    simulator.set_fault("ok")

    assert send(simulator, messages.adduser("Player", HASH, 1)).ok


def test_slow_reply_is_no_reply(simulator):
    simulator.set_fault("slow", delay=1.0, commands={"ADDUSER"})

    with pytest.raises(GameNoReply) as caught:
        send(simulator, messages.adduser("Player", HASH, 1), read_timeout=0.3)
    assert caught.value.reason == "timeout"
    assert not caught.value.retry_safe
    assert "may have run" in str(caught.value)


def test_slow_reply_within_timeout(simulator):
    simulator.set_fault("slow", delay=0.2)

    assert send(simulator, messages.adduser("Player", HASH, 1), read_timeout=2.0).ok


def test_drop_is_no_reply(simulator):
    simulator.set_fault("drop", commands={"ADDUSER"})

    with pytest.raises(GameNoReply) as caught:
        send(simulator, messages.adduser("Player", HASH, 1))
    assert caught.value.reason == "closed"
    assert simulator.find_account("Player") is not None


def test_drop_before_apply_creates_nothing(simulator):
    simulator.set_fault("drop", commands={"ADDUSER"}, apply=False)

    with pytest.raises(GameNoReply):
        send(simulator, messages.adduser("Player", HASH, 1))
    assert simulator.find_account("Player") is None
    assert simulator.count_commands("ADDUSER") == 1


def test_garbage_is_protocol_error(simulator):
    simulator.set_fault("garbage", commands={"ADDUSER"})

    with pytest.raises(GameProtocolError) as caught:
        send(simulator, messages.adduser("Player", HASH, 1))
    assert not caught.value.retry_safe


def test_half_frame_is_no_reply(simulator):
    simulator.set_fault("half_frame", commands={"ADDUSER"})

    with pytest.raises(GameNoReply) as caught:
        send(simulator, messages.adduser("Player", HASH, 1))
    assert caught.value.reason == "half_frame"


class OneReplyServer:
    """A listener on an ephemeral local port that replies to one frame with fixed bytes and closes."""

    def __init__(self, reply: bytes):
        self.reply = reply
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve)

    def serve(self):
        sock, _ = self.listener.accept()
        with sock:
            sock.settimeout(2.0)
            received = b""
            while not received.endswith(b"\x00"):
                chunk = sock.recv(4096)
                if not chunk:
                    return
                received += chunk
            sock.sendall(self.reply)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.thread.join(timeout=5)
        self.listener.close()


def test_unexpected_reply_tag():
    with OneReplyServer(b'<MYPARAM login="x"/>\x00') as server:
        with pytest.raises(GameProtocolError, match="neither OK nor an error"):
            send_admin_command(HOST, server.port, messages.adduser("Player", HASH, 1), read_timeout=2.0)


def test_err_reply_is_refused():
    with OneReplyServer(b'<ERR code="REGISTER_DENIED"/>\x00') as server:
        with pytest.raises(GameRefused) as caught:
            send_admin_command(HOST, server.port, messages.adduser("Player", HASH, 1), read_timeout=2.0)
    assert caught.value.code == "REGISTER_DENIED"


def test_oversized_reply_is_protocol_error():
    with OneReplyServer(b"<OK pad='" + b"x" * 200 + b"'/>\x00") as server:
        with pytest.raises(GameProtocolError, match="limit"):
            send_admin_command(
                HOST, server.port, messages.adduser("Player", HASH, 1), read_timeout=2.0, max_frame_bytes=100
            )


def test_cyrillic_login_utf8(simulator):
    send(simulator, messages.adduser("Странник", HASH, 1))

    assert simulator.commands("ADDUSER")[0].attributes["l"] == "Странник"


def test_cyrillic_login_cp1251():
    with GameServerSimulator(HOST, 0, encoding="cp1251") as simulator:
        reply = send(simulator, messages.adduser("Странник Ёж", HASH, 1), encoding="cp1251")
        with pytest.raises(GameRefused) as caught:
            send(simulator, messages.adduser("странник ЕЖ", HASH, 1), encoding="cp1251")
        recorded = simulator.commands("ADDUSER")[0].attributes["l"]

    assert reply.ok
    assert recorded == "Странник Ёж"
    assert caught.value.code == "LOGIN_EXISTS"


def test_encoding_mismatch_garbles_login():
    """A client sending UTF-8 to a cp1251 server creates a different login; the encoding must match."""
    with GameServerSimulator(HOST, 0, encoding="cp1251") as simulator:
        send(simulator, messages.adduser("Странник", HASH, 1), encoding="utf-8")
        recorded = simulator.commands("ADDUSER")[0].attributes["l"]

    assert recorded != "Странник"
    assert recorded == "Странник".encode("utf-8").decode("cp1251")


def test_connect_timeout(monkeypatch):
    def time_out(address, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(client_module.socket, "create_connection", time_out)

    with pytest.raises(GameConnectFailed, match="timed out after 0.5 s"):
        send_admin_command(HOST, 1, messages.getme(), connect_timeout=0.5)


def test_name_not_resolved(monkeypatch):
    def not_resolved(address, timeout):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(client_module.socket, "create_connection", not_resolved)

    with pytest.raises(GameConnectFailed, match="Name or service not known"):
        send_admin_command("game.invalid", 5190, messages.getme())


class FailingSocket:
    def __init__(self, accepted_bytes):
        self.accepted_bytes = accepted_bytes

    def settimeout(self, value):
        pass

    def send(self, data):
        if self.accepted_bytes:
            count, self.accepted_bytes = self.accepted_bytes, 0
            return count
        raise BrokenPipeError(32, "Broken pipe")


def test_send_fails_before_first_byte():
    with pytest.raises(GameConnectFailed, match="before ADDUSER was sent"):
        client_module._send_frame(FailingSocket(0), b"x" * 100, 1.0, "ADDUSER", "here")


def test_send_fails_midway():
    with pytest.raises(GameNoReply) as caught:
        client_module._send_frame(FailingSocket(10), b"x" * 100, 1.0, "ADDUSER", "here")
    assert caught.value.reason == "send_failed"
    assert "10 of 100 bytes" in str(caught.value)


def test_invalid_message_sends_nothing(simulator):
    with pytest.raises(ValueError):
        send(simulator, "<A/>\x00<B/>")
    assert simulator.connections_accepted == 0


# -- retries


def test_retry_only_connect_failures(simulator):
    simulator.set_fault("refuse")
    calls = []
    sleeps = []

    def operation():
        calls.append(1)
        return send(simulator, messages.adduser("Player", HASH, 1))

    with pytest.raises(GameConnectFailed):
        retry_connect_failures(operation, attempts=4, initial_delay=0.5, max_delay=1.5, sleep=sleeps.append)
    assert len(calls) == 4
    assert sleeps == [0.5, 1.0, 1.5]


def test_retry_succeeds_after_refusal_ends(simulator):
    simulator.set_fault("refuse")
    calls = []

    def operation():
        calls.append(1)
        return send(simulator, messages.adduser("Player", HASH, 1))

    def clear_after_first_failure(delay):
        simulator.set_fault("ok")

    reply = retry_connect_failures(operation, attempts=3, sleep=clear_after_first_failure)

    assert reply.ok
    assert len(calls) == 2
    assert simulator.count_commands("ADDUSER") == 1


@pytest.mark.parametrize(
    "mode, error",
    [("drop", GameNoReply), ("half_frame", GameNoReply), ("garbage", GameProtocolError), ("slow", GameNoReply)],
)
def test_never_retried_after_send(simulator, mode, error):
    simulator.set_fault(mode, commands={"ADDUSER"}, delay=1.0)
    sleeps = []

    with pytest.raises(error):
        retry_connect_failures(
            lambda: send(simulator, messages.adduser("Player", HASH, 1), read_timeout=0.3),
            attempts=3,
            sleep=sleeps.append,
        )
    assert simulator.count_commands("ADDUSER") == 1
    assert sleeps == []


def test_refused_reply_not_retried(simulator):
    simulator.add_account("Player", HASH)
    sleeps = []

    with pytest.raises(GameRefused):
        retry_connect_failures(lambda: send(simulator, messages.adduser("Player", HASH, 1)), sleep=sleeps.append)
    assert simulator.count_commands("ADDUSER") == 1
    assert sleeps == []


def test_retry_attempts_checked():
    with pytest.raises(ValueError, match="attempts"):
        retry_connect_failures(lambda: None, attempts=0)


def test_admin_client_add_user(simulator):
    admin = AdminClient(HOST, simulator.port, read_timeout=2.0)

    assert admin.add_user("Player", HASH, 0).get("id") == "1"
    assert admin.change_password("Player", transform_password("another1")).ok
    assert simulator.find_account("Player").gender == 0


def test_admin_client_gives_up(simulator):
    simulator.set_fault("refuse")
    admin = AdminClient(HOST, simulator.port, attempts=3, initial_delay=0.01, max_delay=0.02)

    with pytest.raises(GameConnectFailed):
        admin.add_user("Player", HASH, 1)
    assert simulator.connections_accepted == 0


def test_admin_client_recovers(simulator):
    simulator.set_fault("refuse")
    admin = AdminClient(HOST, simulator.port, attempts=6, initial_delay=0.1, max_delay=0.2)
    timer = threading.Timer(0.15, simulator.set_fault, args=("ok",))
    timer.start()
    try:
        assert admin.add_user("Player", HASH, 1).ok
    finally:
        timer.join()
    assert simulator.count_commands("ADDUSER") == 1


def test_admin_client_no_retry_on_drop(simulator):
    simulator.set_fault("drop", commands={"ADDUSER"})
    admin = AdminClient(HOST, simulator.port, attempts=3, initial_delay=0.01)

    with pytest.raises(GameNoReply):
        admin.add_user("Player", HASH, 1)
    assert simulator.count_commands("ADDUSER") == 1


def test_admin_client_checks_encoding():
    with pytest.raises(ValueError, match="not supported"):
        AdminClient(HOST, 5190, encoding="utf-16")


def test_password_never_in_errors(simulator):
    simulator.add_account("Player", HASH)

    with pytest.raises(GameRefused) as caught:
        send(simulator, messages.adduser("Player", HASH, 1))
    assert HASH not in str(caught.value)
