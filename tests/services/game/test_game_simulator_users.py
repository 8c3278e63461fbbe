"""The simulator with a users table: accounts and ids survive a restart, as on a game server."""

import subprocess
import sys
from pathlib import Path

import pytest

from services.game import messages
from services.game.client import GameRefused, send_admin_command
from services.game.password import transform_password
from services.game.simulator import (
    DEFAULT_SLOW_DELAY,
    GameServerSimulator,
    MariaDBUsers,
    build_parser,
    parse_fault,
)


HOST = "127.0.0.1"
HASH = transform_password("qwerty12")
NEW_HASH = transform_password("newpass99")
REPOSITORY = Path(__file__).resolve().parents[3]


def admin(port, text):
    return send_admin_command(HOST, port, text, read_timeout=5.0)


def users_rows(gamedb):
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT id, login, password, gender, email FROM users ORDER BY id")
        return list(cursor.fetchall())


def started(users: MariaDBUsers) -> GameServerSimulator:
    return GameServerSimulator(
        HOST, 0, greeting=False, users_writer=users.insert, password_writer=users.update_password,
        accounts=users.load(),
    ).start()


def test_restart_keeps_accounts_and_ids(gamedb, gamedb_dsn):
    users = MariaDBUsers(gamedb_dsn)
    first = started(users)
    try:
        assert admin(first.port, messages.adduser("Player", HASH, 0, "a@b.c")).get("id") == "1"
    finally:
        first.stop()

    second = started(users)
    try:
        account = second.find_account("player")
        assert account is not None
        assert (account.id, account.login, account.password_hash, account.gender, account.email) == (
            1, "Player", HASH, 0, "a@b.c")
        assert admin(second.port, messages.newpas("Player", NEW_HASH)).ok
        assert admin(second.port, messages.adduser("Second", HASH, 1)).get("id") == "2"
    finally:
        second.stop()

    assert users_rows(gamedb) == [(1, "Player", NEW_HASH, 0, "a@b.c"), (2, "Second", HASH, 1, "test@test.ru")]


def test_new_ids_follow_existing_rows(gamedb, gamedb_dsn):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, login) VALUES (1, 'Old Timer'), (41, 'Veteran')")
    simulator = started(MariaDBUsers(gamedb_dsn))
    try:
        assert admin(simulator.port, messages.adduser("Newcomer", HASH, 1)).get("id") == "42"
        old = simulator.find_account("Old Timer")
        assert (old.password_hash, old.gender, old.email) == ("", 1, "")
        with pytest.raises(GameRefused) as taken:
            admin(simulator.port, messages.adduser("VETERAN", HASH, 1))
        assert taken.value.code == "LOGIN_EXISTS"
    finally:
        simulator.stop()


def test_account_without_password_cannot_log_in(gamedb, gamedb_dsn):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, login) VALUES (7, 'Keyless')")
    simulator = started(MariaDBUsers(gamedb_dsn))
    try:
        with pytest.raises(GameRefused) as refused:
            admin(simulator.port, '<LOGIN l="Keyless" p=""/>')
        assert refused.value.code == "LOGIN_FAILED"
    finally:
        simulator.stop()


def test_failed_write_uses_up_the_id():
    written = []

    def fail_once(account):
        if not written:
            written.append(None)
            raise RuntimeError("duplicate entry for key PRIMARY")
        written.append(account)

    with GameServerSimulator(HOST, 0, greeting=False, users_writer=fail_once) as simulator:
        with pytest.raises(GameRefused):
            admin(simulator.port, messages.adduser("First Try", HASH, 1))
        reply = admin(simulator.port, messages.adduser("Second Try", HASH, 1))

    assert reply.get("id") == "2"
    assert written[1].id == 2


def test_failed_password_write_keeps_old_password():
    def fail(account):
        raise RuntimeError("users table is read-only")

    with GameServerSimulator(HOST, 0, greeting=False, password_writer=fail) as simulator:
        simulator.add_account("Player", HASH)
        with pytest.raises(GameRefused) as refused:
            admin(simulator.port, messages.newpas("Player", NEW_HASH))
        assert refused.value.code == "INTERNAL"
        assert simulator.find_account("Player").password_hash == HASH


def test_missing_password_column_named(mariadb, mariadb_dsn):
    with mariadb.cursor() as cursor:
        cursor.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, login VARCHAR(64), gender TINYINT,"
                       " email VARCHAR(255))")
    with pytest.raises(ValueError, match="lacks the column.s. password; run tzr-gamedb test-schema"):
        MariaDBUsers(mariadb_dsn).load()


def run_simulator(gamedb_dsn, *extra):
    return subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "services.game.simulator", "--host", HOST, "--port", "0",
         "--no-greeting", "--users-dsn", gamedb_dsn, *extra],
        cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def port_of(process) -> int:
    line = process.stdout.readline()
    assert line.startswith(f"listening on {HOST}:"), process.stderr.read() if process.poll() is not None else line
    return int(line.rsplit(":", 1)[1])


def stop(process) -> str:
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


def test_restarted_process_keeps_accounts(gamedb, gamedb_dsn):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, login) VALUES (1, 'Made In Game')")

    process = run_simulator(gamedb_dsn)
    try:
        first = admin(port_of(process), messages.adduser("Before Restart", HASH, 1))
    finally:
        stop(process)

    process = run_simulator(gamedb_dsn)
    try:
        port = port_of(process)
        changed = admin(port, messages.newpas("Before Restart", NEW_HASH))
        second = admin(port, messages.adduser("After Restart", HASH, 0))
    finally:
        stderr = stop(process)

    assert first.get("id") == "2"
    assert changed.ok
    assert second.get("id") == "3"
    assert "loaded 2 accounts" in stderr
    assert HASH not in stderr


def test_process_reports_unusable_users_table(mariadb_dsn):
    process = run_simulator(mariadb_dsn)
    try:
        process.wait(timeout=30)
    finally:
        stderr = stop(process)
    assert process.returncode == 1
    assert "cannot load the accounts of --users-dsn" in stderr
    assert "users" in stderr


def test_slow_fault_without_delay_uses_default():
    assert parse_fault("slow") == {"mode": "slow", "delay": DEFAULT_SLOW_DELAY}
    assert parse_fault("slow,delay=0.5")["delay"] == 0.5
    with GameServerSimulator(HOST, 0, greeting=False) as simulator:
        rule = simulator.add_fault(**parse_fault("slow,commands=ADDUSER"))
    assert rule.delay == DEFAULT_SLOW_DELAY


def test_help_names_the_command():
    assert build_parser().format_usage().startswith("usage: tzr-gamesim")
