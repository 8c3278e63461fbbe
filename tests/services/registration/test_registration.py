"""The registration service against real RabbitMQ, MariaDB and Redis, the game simulator and a fake Telegram."""

import hashlib
import hmac
import logging
import time
import uuid

import eventlet
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.errors import (
    GameAccountNotFound,
    GameServerInternalError,
    GameServerNoReply,
    GameServerTimeout,
    GameServerUnavailable,
    LimitExceeded,
    LoginTaken,
    NoAccounts,
    NotInTelegramGroup,
    RequestIdReused,
    RequestInProgress,
    ServiceUnavailable,
    TelegramAuthFailed,
    TelegramUnavailable,
    ValidationFailed,
)
from services.common.request_context import RequestIdFilter
from services.game.password import transform_password
from services.registration import store
from services.registration.dependencies import RegistrationSettings
from services.registration.service import RegistrationService


pytestmark = pytest.mark.integration

TELEGRAM_ID = 555000111


def new_id() -> str:
    return uuid.uuid4().hex


def payload(login="Ranger Ola", telegram_id=TELEGRAM_ID, **extra) -> dict:
    return {"login": login, "password": "qwerty12", "gender": 1, "telegram_id": telegram_id, **extra}


def rows(gamedb, sql, *args) -> list[tuple]:
    with gamedb.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def links(gamedb) -> list[tuple]:
    return rows(gamedb, "SELECT telegram_id, login FROM tgplayers ORDER BY login")


def accounts(gamedb) -> list[str]:
    return [row[0] for row in rows(gamedb, "SELECT login FROM users ORDER BY login")]


@pytest.fixture
def service(container_factory, registration_config, telegram):
    telegram.add_member(TELEGRAM_ID)
    container = container_factory(RegistrationService, registration_config)
    container.start()
    with ServiceRpcProxy("registration", registration_config, timeout=60) as proxy:
        yield proxy


def test_register_creates_account_and_link(service, gamedb, simulator):
    result = service.register(payload(username="ola"), "req-00000001")

    assert result == {"login": "Ranger Ola", "telegram_id": TELEGRAM_ID, "request_id": "req-00000001"}
    assert links(gamedb) == [(TELEGRAM_ID, "Ranger Ola")]
    assert accounts(gamedb) == ["Ranger Ola"]
    adduser = simulator.commands("ADDUSER")
    assert len(adduser) == 1
    assert adduser[0].attributes["l"] == "Ranger Ola"
    assert adduser[0].attributes["g"] == "1"
    state = rows(gamedb, "SELECT state, username, login_hold FROM tzr_registrations")
    assert state == [("active", "ola", "Ranger Ola")]


def test_password_transform_sent_never_stored(service, gamedb, simulator):
    service.register(payload(), "req-00000002")
    assert simulator.find_account("Ranger Ola").password_hash == transform_password("qwerty12")
    stored = rows(gamedb, "SELECT * FROM tzr_registrations")[0]
    assert "qwerty12" not in repr(stored)
    assert transform_password("qwerty12") not in repr(stored)


def test_cyrillic_login_end_to_end(service, gamedb, simulator):
    service.register(payload(login="Странник"), "req-cyrillic1")
    assert links(gamedb) == [(TELEGRAM_ID, "Странник")]
    assert simulator.find_account("Странник") is not None
    with pytest.raises(LoginTaken):
        service.register(payload(login="СТРАННИК", telegram_id=TELEGRAM_ID), "req-cyrillic2")


def test_repeated_request_id_returns_stored_outcome(service, gamedb, simulator):
    first = service.register(payload(), "req-repeat-1")
    second = service.register(payload(), "req-repeat-1")
    assert second == first
    assert simulator.count_commands("ADDUSER") == 1
    assert len(links(gamedb)) == 1


def test_request_id_reused_for_other_data(service):
    service.register(payload(), "req-reuse-01")
    with pytest.raises(RequestIdReused):
        service.register(payload(login="Other Name"), "req-reuse-01")


def test_repeated_failed_request_returns_same_error(service, simulator):
    simulator.add_account("Taken One", transform_password("whatever1"), 0)
    with pytest.raises(LoginTaken):
        service.register(payload(login="Taken One"), "req-taken-01")
    with pytest.raises(LoginTaken):
        service.register(payload(login="Taken One"), "req-taken-01")
    assert simulator.count_commands("ADDUSER") == 1


def test_login_taken_in_game_users_table(service, gamedb, simulator):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO users (login) VALUES ('Old Timer')")
    with pytest.raises(LoginTaken):
        service.register(payload(login="old timer"), new_id())
    assert simulator.count_commands("ADDUSER") == 0


def test_login_taken_in_tgplayers(service, gamedb, simulator):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO tgplayers (telegram_id, login) VALUES (1, 'Linked')")
    with pytest.raises(LoginTaken):
        service.register(payload(login="LINKED"), new_id())
    assert simulator.count_commands("ADDUSER") == 0


def settle_all(replies, expected=()):
    """Wait for async RPC replies; return the results, with None for the expected errors."""
    results = []
    for reply in replies:
        try:
            results.append(reply.result())
        except expected:
            results.append(None)
    return results


def test_twenty_concurrent_registrations_of_one_login(service, gamedb, simulator, telegram):
    for telegram_id in range(1000, 1020):
        telegram.add_member(telegram_id)

    replies = [
        service.register.call_async(payload(login="Contested", telegram_id=telegram_id), new_id())
        for telegram_id in range(1000, 1020)
    ]
    results = settle_all(replies, LoginTaken)

    assert len([r for r in results if r is not None]) == 1
    assert len(links(gamedb)) == 1
    assert accounts(gamedb) == ["Contested"]
    assert simulator.count_commands("ADDUSER") == 1


def test_ten_concurrent_registrations_of_one_user_limit_five(service, gamedb, simulator):
    replies = [service.register.call_async(payload(login=f"Alt {number:02d}"), new_id()) for number in range(10)]
    results = settle_all(replies, LimitExceeded)

    assert len([r for r in results if r is not None]) == 5
    assert len(links(gamedb)) == 5
    assert simulator.count_commands("ADDUSER") == 5
    with pytest.raises(LimitExceeded) as error:
        service.register(payload(login="One More"), new_id())
    assert error.value.params == {"limit": "5"}


def test_concurrent_repeats_of_one_request_id(service, gamedb, simulator):
    replies = [service.register.call_async(payload(login="Once Only"), "req-concurrent") for _ in range(8)]
    results = settle_all(replies)
    assert all(result == results[0] for result in results)
    assert simulator.count_commands("ADDUSER") == 1
    assert len(links(gamedb)) == 1


def test_game_refusal_frees_login(service, gamedb, simulator):
    writer = simulator.users_writer

    def refuse(account):
        raise RuntimeError("the game's database is read-only")

    simulator.users_writer = refuse  # the simulator then answers <ERROR code="INTERNAL"/>
    with pytest.raises(GameServerInternalError):
        service.register(payload(login="Retry Me"), "req-internal1")
    assert links(gamedb) == []
    assert rows(gamedb, "SELECT state, login_hold, error_code FROM tzr_registrations") == [
        ("failed", None, "game_server_internal_error"),
    ]
    with pytest.raises(GameServerInternalError):
        service.register(payload(login="Retry Me"), "req-internal1")

    simulator.users_writer = writer
    service.register(payload(login="Retry Me"), new_id())
    assert links(gamedb) == [(TELEGRAM_ID, "Retry Me")]


def test_garbage_reply_is_not_taken_for_success(service, gamedb, simulator):
    simulator.set_fault("garbage", commands=["ADDUSER"], count=1, apply=False)
    with pytest.raises(RequestInProgress):
        service.register(payload(login="Garbled"), new_id())
    assert links(gamedb) == []


@pytest.mark.parametrize("mode", ["drop", "half_frame"])
def test_lost_reply_after_account_created_is_settled(service, gamedb, simulator, mode):
    simulator.set_fault(mode, commands=["ADDUSER"], count=1, apply=True)
    result = service.register(payload(login="Lost Reply"), new_id())
    assert result["login"] == "Lost Reply"
    assert links(gamedb) == [(TELEGRAM_ID, "Lost Reply")]
    assert simulator.count_commands("ADDUSER") == 1


def test_slow_game_server_settled_on_repeat(service, gamedb, simulator):
    simulator.set_fault("slow", commands=["ADDUSER"], count=1, delay=3)
    with pytest.raises(RequestInProgress):
        service.register(payload(login="Slow Poke"), "req-slowpoke")
    held = rows(gamedb, "SELECT state, login_hold FROM tzr_registrations")
    assert held == [("pending", "Slow Poke")], "the login stays held while the outcome is unknown"
    eventlet.sleep(3.5)

    result = service.register(payload(login="Slow Poke"), "req-slowpoke")
    assert result["login"] == "Slow Poke"
    assert links(gamedb) == [(TELEGRAM_ID, "Slow Poke")]
    assert simulator.count_commands("ADDUSER") == 1


@pytest.mark.parametrize("mode", ["drop", "half_frame"])
def test_lost_command_leaves_no_orphan(service, gamedb, simulator, mode):
    simulator.set_fault(mode, commands=["ADDUSER"], count=1, apply=False)
    with pytest.raises(RequestInProgress):
        service.register(payload(login="Never Made"), "req-nevermade")
    assert rows(gamedb, "SELECT state FROM tzr_registrations") == [("pending",)]
    eventlet.sleep(1.2)

    with pytest.raises(GameServerNoReply):
        service.register(payload(login="Never Made"), "req-nevermade")
    assert links(gamedb) == []
    assert accounts(gamedb) == []
    assert rows(gamedb, "SELECT state, login_hold, error_code FROM tzr_registrations") == [
        ("failed", None, "game_server_no_reply"),
    ]
    assert simulator.count_commands("ADDUSER") == 1
    service.register(payload(login="Never Made"), new_id())
    assert links(gamedb) == [(TELEGRAM_ID, "Never Made")]


def test_unreachable_game_server_is_retryable(service, gamedb, simulator):
    simulator.set_fault("refuse")
    with pytest.raises(GameServerUnavailable):
        service.register(payload(login="Patient"), "req-patient-1")
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_registrations") == [(0,)]
    simulator.clear_faults()
    assert service.register(payload(login="Patient"), "req-patient-1")["login"] == "Patient"
    assert simulator.count_commands("ADDUSER") == 1


def test_not_in_group(service, telegram, gamedb):
    with pytest.raises(NotInTelegramGroup):
        service.register(payload(telegram_id=42), new_id())
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_registrations") == [(0,)]


@pytest.mark.parametrize("status", ["left", "kicked"])
def test_left_or_kicked_are_not_members(service, telegram, status):
    telegram.add_member(43, status=status)
    with pytest.raises(NotInTelegramGroup):
        service.register(payload(telegram_id=43), new_id())


def test_restricted_member_counts(service, telegram, gamedb):
    telegram.add_member(44, status="restricted", is_member=True)
    service.register(payload(telegram_id=44, login="Restricted"), new_id())
    telegram.add_member(45, status="restricted", is_member=False)
    with pytest.raises(NotInTelegramGroup):
        service.register(payload(telegram_id=45, login="Gone"), new_id())


def test_group_answers_cached(service, telegram):
    service.register(payload(login="Cached One"), new_id())
    calls = telegram.call_count
    service.register(payload(login="Cached Two"), new_id())
    assert telegram.call_count == calls


@pytest.mark.parametrize("fault", ["close", "bad_gateway"])
def test_telegram_down_is_retryable_not_a_pass(service, telegram, gamedb, simulator, fault):
    telegram.add_member(46)
    telegram.down = fault
    with pytest.raises(TelegramUnavailable):
        service.register(payload(telegram_id=46, login="Waiting"), new_id())
    assert simulator.count_commands("ADDUSER") == 0
    telegram.down = None
    service.register(payload(telegram_id=46, login="Waiting"), new_id())


def test_telegram_throttling_is_retryable(service, telegram):
    telegram.add_member(47)
    telegram.retry_after = 3
    with pytest.raises(TelegramUnavailable):
        service.register(payload(telegram_id=47, login="Throttled"), new_id())


def widget(telegram_id: int, token: str, **fields) -> dict:
    data = {"id": telegram_id, "first_name": "Ola", "auth_date": int(time.time()), **fields}
    check = "\n".join(f"{key}={data[key]}" for key in sorted(data))
    secret = hashlib.sha256(token.encode()).digest()
    return {**data, "hash": hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()}


def test_login_widget_gives_the_telegram_id(service, telegram, gamedb):
    telegram.add_member(48)
    body = {"login": "Widget User", "password": "qwerty12", "gender": 0,
            "telegram_auth": widget(48, telegram.token)}
    assert service.register(body, new_id())["telegram_id"] == 48
    assert links(gamedb) == [(48, "Widget User")]


def test_login_widget_forged_rejected(service, telegram):
    body = {"login": "Forger", "password": "qwerty12", "gender": 0,
            "telegram_auth": widget(48, "0:wrong-token")}
    with pytest.raises(TelegramAuthFailed):
        service.register(body, new_id())


def test_login_widget_and_other_id_rejected(service, telegram):
    body = {**payload(telegram_id=49), "telegram_auth": widget(48, telegram.token)}
    with pytest.raises(ValidationFailed) as error:
        service.register(body, new_id())
    assert error.value.fields == {"telegram_id": "telegram_id.mismatch"}


@pytest.mark.parametrize(
    "login",
    ["Robert'; DROP", "a' OR '1'='1", 'x" l="evil', "<ADDUSER/>", "a&b;c"],
)
def test_injection_strings_rejected_harmlessly(service, gamedb, simulator, login):
    with pytest.raises(ValidationFailed):
        service.register(payload(login=login), new_id())
    assert simulator.count_commands("ADDUSER") == 0
    assert rows(gamedb, "SELECT COUNT(*) FROM tgplayers") == [(0,)]


def test_injection_in_username_stored_as_text(service, gamedb):
    username = "x'); DROP TABLE tgplayers; -- <b>&amp;"
    service.register(payload(login="Plain Name", username=username), new_id())
    assert rows(gamedb, "SELECT username FROM tgplayers") == [(username,)]


def test_password_with_xml_characters_reaches_game_as_hash(service, simulator):
    service.register({**payload(login="Symbols"), "password": '<"&\'> x1'}, new_id())
    assert simulator.find_account("Symbols").password_hash == transform_password('<"&\'> x1')


def test_validation_errors_listed(service):
    with pytest.raises(ValidationFailed) as error:
        service.register({"login": "x", "password": "y", "gender": True, "telegram_id": "5"}, new_id())
    assert error.value.fields == {
        "login": "login.length",
        "password": "password.length",
        "gender": "gender.choice",
        "telegram_id": "telegram_id.positive",
    }


def test_stale_pending_registration_settled(service, gamedb, simulator, container_factory, registration_config):
    with gamedb.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tzr_registrations (request_id, request_hash, telegram_id, login, login_hold, gender,"
            " state, updated_at) VALUES ('stale-request', %s, %s, 'Crashed', 'Crashed', 1, 'pending',"
            " NOW(3) - INTERVAL 1 HOUR)",
            ("0" * 64, TELEGRAM_ID),
        )
        cursor.execute("INSERT INTO users (login) VALUES ('Crashed')")
        cursor.execute(
            "INSERT INTO tzr_registrations (request_id, request_hash, telegram_id, login, login_hold, gender,"
            " state, updated_at) VALUES ('stale-request2', %s, %s, 'Vanished', 'Vanished', 1, 'pending',"
            " NOW(3) - INTERVAL 1 HOUR)",
            ("0" * 64, TELEGRAM_ID),
        )
    config = {**registration_config, "REGISTRATION": {**registration_config["REGISTRATION"], "reconcile_interval": 0.2}}
    container = container_factory(RegistrationService, config)
    container.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = dict(rows(gamedb, "SELECT login, state FROM tzr_registrations"))
        if "pending" not in states.values():
            break
        eventlet.sleep(0.2)
    assert states == {"Crashed": "active", "Vanished": "failed"}
    assert links(gamedb) == [(TELEGRAM_ID, "Crashed")]


def test_recover_sends_newpas_for_every_login(service, gamedb, simulator):
    service.register(payload(login="Main Char"), new_id())
    service.register(payload(login="Alt Char"), new_id())

    result = service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())

    assert result == {"logins": ["Alt Char", "Main Char"], "failed": []}
    newpas = simulator.commands("NEWPAS")
    assert sorted(command.attributes["l"] for command in newpas) == ["Alt Char", "Main Char"]
    assert simulator.find_account("Main Char").password_hash == transform_password("newpass9")


def test_recover_without_accounts(service):
    with pytest.raises(NoAccounts):
        service.recover({"password": "newpass9", "telegram_id": 999}, new_id())


def test_recover_game_down(service, simulator):
    service.register(payload(login="Main Char"), new_id())
    simulator.set_fault("refuse")
    with pytest.raises(GameServerUnavailable):
        service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())


def test_ready_reports_backends(service):
    assert service.ready() == {"mariadb": True, "redis": True}


# PASSWORDS AND REQUEST IDS


def test_same_request_id_other_password_rejected(service, simulator):
    service.register(payload(login="Keeper"), "req-password1")
    with pytest.raises(RequestIdReused):
        service.register({**payload(login="Keeper"), "password": "other-pass1"}, "req-password1")
    assert service.register(payload(login="Keeper"), "req-password1")["login"] == "Keeper"
    assert simulator.find_account("Keeper").password_hash == transform_password("qwerty12")
    assert simulator.count_commands("ADDUSER") == 1


def test_login_with_newline_leaves_nothing(service, gamedb, simulator):
    with pytest.raises(ValidationFailed) as error:
        service.register(payload(login="Bob\n"), new_id())
    assert error.value.fields == {"login": "login.charset"}
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_registrations") == [(0,)]
    assert simulator.count_commands("ADDUSER") == 0


# DEADLINES


def test_expired_deadline_refused_without_effect(service, registration_config, gamedb, simulator, caplog):
    service.register(payload(login="Early Bird"), new_id())
    simulator.clear_commands()
    expired = {"request_id": "late-request-1", "deadline": time.time() - 5}

    with caplog.at_level(logging.WARNING, logger="services.registration"):
        with ServiceRpcProxy("registration", registration_config, context_data=expired, timeout=30) as late:
            with pytest.raises(ServiceUnavailable):
                late.register(payload(login="Too Late"), "late-request-1")
            with pytest.raises(ServiceUnavailable):
                late.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, "late-request-1")

    assert rows(gamedb, "SELECT login FROM tzr_registrations ORDER BY login") == [("Early Bird",)]
    assert simulator.commands() == []
    assert "registration late-request-1: the caller stopped waiting" in caplog.text
    assert "recovery late-request-1: the caller stopped waiting" in caplog.text


def test_future_deadline_accepted(service, registration_config):
    context = {"request_id": "in-time-0001", "deadline": time.time() + 30}
    with ServiceRpcProxy("registration", registration_config, context_data=context, timeout=30) as proxy:
        assert proxy.register(payload(login="In Time"), "in-time-0001")["login"] == "In Time"


# TELEGRAM IDS FROM LOGIN DATA


def test_negative_id_in_login_data_rejected(service, telegram, gamedb):
    body = {"login": "Negative", "password": "qwerty12", "gender": 0, "telegram_auth": widget(-5, telegram.token)}
    with pytest.raises(ValidationFailed) as error:
        service.register(body, new_id())
    assert error.value.fields == {"telegram_auth": "telegram_id.positive"}
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_telegram_quota") == [(0,)]
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_registrations") == [(0,)]


def test_login_data_without_bot_token_refused(container_factory, registration_config, telegram, gamedb,
                                              monkeypatch, caplog):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    config = {**registration_config, "REGISTRATION": {**registration_config["REGISTRATION"], "check_group": False}}
    container_factory(RegistrationService, config).start()
    body = {"login": "No Token", "password": "qwerty12", "gender": 0, "telegram_auth": widget(48, telegram.token)}
    with caplog.at_level(logging.WARNING, logger="services.registration"):
        with ServiceRpcProxy("registration", config, timeout=30) as proxy:
            with pytest.raises(ValidationFailed) as raised:
                proxy.register(body, new_id())
    assert raised.value.fields == {"telegram_auth": "telegram_auth.not_configured"}
    assert "TELEGRAM_BOT_TOKEN" in caplog.text
    assert rows(gamedb, "SELECT COUNT(*) FROM tzr_registrations") == [(0,)]


def test_unverified_ids_warned_at_start(container_factory, registration_config, caplog):
    with caplog.at_level(logging.WARNING, logger="services.registration"):
        container_factory(RegistrationService, registration_config).start()
    assert "anyone holding an API key" in caplog.text
    assert "reset the passwords" in caplog.text


# STORED FAILURES


def test_legacy_no_reply_failure_reported_as_no_reply(service, gamedb):
    hash_ = store.request_hash("Old Failure", 1, TELEGRAM_ID, None, transform_password("qwerty12"))
    with gamedb.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tzr_registrations (request_id, request_hash, telegram_id, login, gender, state,"
            " error_code, error_detail) VALUES ('req-legacy01', %s, %s, 'Old Failure', 1, 'failed',"
            " 'game_server_error', 'no reply from the game server and no account: left pending')",
            (hash_, TELEGRAM_ID),
        )
    with pytest.raises(GameServerNoReply):
        service.register(payload(login="Old Failure"), "req-legacy01")


# RECOVERY OUTCOMES


def link(gamedb, login, telegram_id=TELEGRAM_ID):
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO tgplayers (telegram_id, login) VALUES (%s, %s)", (telegram_id, login))


def test_recover_reports_failed_logins(service, gamedb, simulator):
    service.register(payload(login="Real One"), new_id())
    link(gamedb, "Ghost One")

    result = service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())

    assert result == {"logins": ["Real One"], "failed": ["Ghost One"]}
    assert simulator.find_account("Real One").password_hash == transform_password("newpass9")


def test_recover_unknown_logins_named(service, gamedb):
    link(gamedb, "Ghost One")
    link(gamedb, "Ghost Two")
    with pytest.raises(GameAccountNotFound) as error:
        service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())
    assert error.value.params == {"logins": "Ghost One, Ghost Two"}


def test_recover_game_internal_error(service, simulator):
    service.register(payload(login="Main Char"), new_id())

    def fail(account):
        raise RuntimeError("users table is read-only")

    simulator.password_writer = fail
    with pytest.raises(GameServerInternalError):
        service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())


def test_recover_without_reply_is_timeout(service, simulator):
    service.register(payload(login="Main Char"), new_id())
    simulator.set_fault("drop", commands=["NEWPAS"], count=1, apply=False)
    with pytest.raises(GameServerTimeout):
        service.recover({"password": "newpass9", "telegram_id": TELEGRAM_ID}, new_id())


# LOGS AND SETTINGS


def test_timer_lines_carry_registration_request_id(gamedb, simulator, container_factory, registration_config,
                                                   caplog):
    with gamedb.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tzr_registrations (request_id, request_hash, telegram_id, login, login_hold, gender,"
            " state, updated_at) VALUES ('timer-request1', %s, %s, 'Orphan', 'Orphan', 1, 'pending',"
            " NOW(3) - INTERVAL 1 HOUR)",
            ("0" * 64, TELEGRAM_ID),
        )
    caplog.handler.addFilter(RequestIdFilter())
    config = {**registration_config, "REGISTRATION": {**registration_config["REGISTRATION"], "reconcile_interval": 0.2}}
    with caplog.at_level(logging.INFO, logger="services.registration"):
        container_factory(RegistrationService, config).start()
        deadline = time.monotonic() + 15
        while rows(gamedb, "SELECT state FROM tzr_registrations") == [("pending",)] and time.monotonic() < deadline:
            eventlet.sleep(0.2)
    settled = [record for record in caplog.records if "Orphan" in record.getMessage()
               or "timer-request1" in record.getMessage()]
    assert settled
    assert all(record.request_id == "timer-request1" for record in settled)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("game_port", "5190x", r"config REGISTRATION.game_port \(TZR_GAME_PORT\) must be an integer, got '5190x'"),
        ("account_limit", "0", r"config REGISTRATION.account_limit \(TZR_ACCOUNT_LIMIT\) must be at least 1"),
        ("pending_timeout", "soon", r"config REGISTRATION.pending_timeout must be a number, got 'soon'"),
    ],
)
def test_bad_setting_named(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        RegistrationSettings.from_config({"REGISTRATION": {key: value}})
