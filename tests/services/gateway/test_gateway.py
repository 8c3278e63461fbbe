"""The HTTP gateway in front of the registration and status services, all on real RabbitMQ."""

import importlib.metadata
import inspect
import json
import logging
import socket
import time
import uuid

import eventlet
import pytest
import requests

from services.common.request_context import QuietClientErrors, RequestIdFilter
from services.battles.service import BattlesService
from services.game.password import transform_password
from services.gateway.guard import hash_api_key
from services.gateway.service import GatewayService
from services.ingest.service import IngestService
from services.registration.service import RegistrationService
from services.shop.service import ShopService
from services.status.service import StatusService


pytestmark = pytest.mark.integration

API_KEY = "site-key-" + uuid.uuid4().hex
OTHER_KEY = "agent-key-" + uuid.uuid4().hex
ORIGIN = "https://site.example.test"
TELEGRAM_ID = 777000111


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def game_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def gateway_config(registration_config, game_listener):
    port = free_port()
    return {
        **registration_config,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "STATUS": {"game_host": "127.0.0.1", "game_port": game_listener, "ttl": 30,
                   "refresh_interval": 3600, "probe_timeout": 0.5},
        "GATEWAY": {
            "api_keys": f"site:{hash_api_key(API_KEY)},agent:{hash_api_key(OTHER_KEY)}",
            "cors_origins": ORIGIN,
            "ip_limit": "1000/minute",
            "key_limit": "1000/minute",
            "account_limit": "1000/minute",
            "max_body_bytes": 4096,
            "timeouts": {"register": 30, "recover": 30, "status": 3, "ready": 2},
        },
        "REGISTRATION": {**registration_config["REGISTRATION"], "check_group": False},
    }


def start(runner_factory, config, *services):
    runner = runner_factory(config, *services)
    runner.start()
    return f"http://{config['WEB_SERVER_ADDRESS']}"


@pytest.fixture
def base_url(runner_factory, gateway_config):
    return start(runner_factory, gateway_config, GatewayService, RegistrationService, StatusService)


def register_body(login="Gate Keeper", **extra) -> dict:
    return {"login": login, "password": "qwerty12", "gender": 0, "telegram_id": TELEGRAM_ID, **extra}


def post(base_url, path, body, key=API_KEY, **headers):
    if key is not None:
        headers["X-API-Key"] = key
    return requests.post(f"{base_url}{path}", json=body, headers=headers, timeout=30)


def assert_envelope(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert response.headers["Content-Type"].startswith("application/json")
    return body


def test_health(base_url):
    response = requests.get(f"{base_url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_register_through_gateway(base_url, gamedb):
    response = post(base_url, "/api/register", register_body(), **{"X-Request-Id": "site-request-0001"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"ok": True, "message": "Регистрация прошла успешно.", "login": "Gate Keeper",
                    "request_id": "site-request-0001"}
    assert response.headers["X-Request-Id"] == "site-request-0001"
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT telegram_id, login FROM tgplayers")
        assert cursor.fetchall() == ((TELEGRAM_ID, "Gate Keeper"),)


def test_repeated_request_id_over_http(base_url, simulator):
    headers = {"X-Request-Id": "site-request-0002"}
    first = post(base_url, "/api/register", register_body(login="Twice"), **headers)
    second = post(base_url, "/api/register", register_body(login="Twice"), **headers)
    assert first.json() == second.json()
    assert simulator.count_commands("ADDUSER") == 1


def test_request_id_in_body(base_url):
    response = post(base_url, "/api/register", register_body(login="Body Id", **{"Request-Id": "body-id-00001"}))
    assert response.json()["request_id"] == "body-id-00001"
    assert response.headers["X-Request-Id"] == "body-id-00001"


def test_english_messages(base_url):
    response = post(base_url, "/api/register", register_body(login="x"), **{"Accept-Language": "en-US,en;q=0.9"})
    body = assert_envelope(response, 400, "validation_error")
    assert body["message"] == "The request data is invalid."
    assert body["fields"] == {"login": "The login must be 3 to 16 characters long."}


def test_validation_envelope_in_russian(base_url):
    response = post(base_url, "/api/register", {"login": "x", "password": 5, "gender": True, "telegram_id": 0})
    body = assert_envelope(response, 400, "validation_error")
    assert set(body["fields"]) == {"login", "password", "gender", "telegram_id"}
    assert body["fields"]["gender"].startswith("Выберите пол")


@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x", API_KEY.upper()])
def test_missing_or_wrong_key(base_url, key):
    response = post(base_url, "/api/register", register_body(), key=key)
    body = assert_envelope(response, 401, "invalid_api_key")
    assert body["message"] == "Ключ API не указан или неверен."


def test_second_key_accepted(base_url):
    assert post(base_url, "/api/register", register_body(login="Agent Made"), key=OTHER_KEY).status_code == 200


def test_login_taken_over_http(base_url):
    post(base_url, "/api/register", register_body(login="Taken Name"))
    response = post(base_url, "/api/register", register_body(login="taken name"))
    assert_envelope(response, 409, "login_taken")


def test_malformed_json(base_url):
    response = requests.post(f"{base_url}/api/register", data=b"{not json",
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}, timeout=5)
    body = assert_envelope(response, 400, "bad_request")
    assert "JSON" in body["message"]


def test_wrong_content_type(base_url):
    response = requests.post(f"{base_url}/api/register", data="login=x",
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/x-www-form-urlencoded"},
                             timeout=5)
    assert_envelope(response, 400, "bad_request")


def test_body_not_an_object(base_url):
    assert_envelope(post(base_url, "/api/register", [1, 2]), 400, "bad_request")


def test_body_too_large(base_url):
    response = post(base_url, "/api/register", register_body(username="u" * 5000))
    body = assert_envelope(response, 413, "payload_too_large")
    assert "4096" in body["message"]


def test_unknown_route_and_method(base_url):
    assert_envelope(requests.get(f"{base_url}/api/nothing", timeout=5), 404, "not_found")
    assert_envelope(requests.delete(f"{base_url}/api/register", timeout=5), 405, "method_not_allowed")


def test_status_through_gateway(base_url):
    response = requests.get(f"{base_url}/api/server/status", timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["server_status"] == 1.0
    assert body["rates"]["exp"] == 1.0
    assert body["online"] is True
    assert body["stale"] is False
    assert len(response.headers["X-Request-Id"]) == 32


def test_cors_preflight_needs_no_key(base_url):
    response = requests.options(f"{base_url}/api/register", timeout=5, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    })
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in response.headers["Access-Control-Allow-Headers"]


def test_cors_other_origin_gets_no_grant(base_url):
    response = requests.options(f"{base_url}/api/register", headers={"Origin": "https://evil.example.test"},
                                timeout=5)
    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers
    status = requests.get(f"{base_url}/api/server/status", headers={"Origin": "https://evil.example.test"},
                          timeout=5)
    assert "Access-Control-Allow-Origin" not in status.headers


def test_cors_on_answers_and_errors(base_url):
    ok = requests.get(f"{base_url}/api/server/status", headers={"Origin": ORIGIN}, timeout=5)
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    error = post(base_url, "/api/register", register_body(), key=None, Origin=ORIGIN)
    assert error.status_code == 401
    assert error.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_metrics(base_url):
    requests.get(f"{base_url}/health", timeout=5)
    response = requests.get(f"{base_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'tzr_http_requests_total{method="GET",route="health",status="200"}' in response.text
    assert "tzr_http_request_seconds_bucket" in response.text


def test_openapi_describes_every_route(base_url):
    document = requests.get(f"{base_url}/api/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.1")
    routes = {
        (entrypoint.url.replace("<", "{").replace(">", "}"), entrypoint.method.split(",")[0].lower())
        for _, method in inspect.getmembers(GatewayService, inspect.isfunction)
        for entrypoint in getattr(method, "nameko_entrypoints", ())
    }
    assert {"/api/register", "/api/battles/{battle_id}", "/api/players/top"} <= {url for url, _ in routes}
    described = {(url, verb) for url, item in document["paths"].items() for verb in item}
    assert described == routes
    for url, item in document["paths"].items():
        for operation in item.values():
            assert operation["summary"] and "200" in operation["responses"], url
    register = document["paths"]["/api/register"]["post"]
    assert {"400", "401", "403", "409", "413", "429", "502", "503"} <= set(register["responses"])


def test_ready_when_everything_runs(runner_factory, gateway_config, pg_dsn, tmp_path):
    folders = {name: tmp_path / name for name in ("drop", "archive", "quarantine")}
    config = {
        **gateway_config,
        "BATTLES": {"dsn": pg_dsn},
        "INGEST": {"dsn": pg_dsn, "interval": 3600, **{f"{name}_dir": str(path) for name, path in folders.items()}},
        "SHOP": {"dsn": pg_dsn, "interval": 3600, "shops": "moscow=Москва"},
    }
    base_url = start(runner_factory, config, GatewayService, RegistrationService, StatusService,
                     BattlesService, IngestService, ShopService)
    response = requests.get(f"{base_url}/ready", timeout=10)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["redis"] is True
    assert checks["registration"] == {"mariadb": True, "redis": True}
    assert checks["status"] == {"mariadb": True, "redis": True, "game_port": True}
    assert checks["battles"] == {"postgres": True}
    assert checks["ingest"] == {"postgres": True, "drop_dir": True}
    assert checks["shop"] == {"postgres": True}


def test_services_down_give_503_in_bounded_time(runner_factory, gateway_config):
    base_url = start(runner_factory, gateway_config, GatewayService)
    started = time.monotonic()
    response = requests.get(f"{base_url}/api/server/status", timeout=30)
    elapsed = time.monotonic() - started
    body = assert_envelope(response, 503, "service_unavailable")
    assert body["message"].startswith("Сервис временно недоступен")
    assert elapsed < 10

    ready = requests.get(f"{base_url}/ready", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["registration"] == {"service": False, "error": "service_unavailable"}


def test_recover_through_gateway(base_url, simulator):
    post(base_url, "/api/register", register_body(login="Forgetful"))
    response = post(base_url, "/api/recover", {"password": "newpass99", "telegram_id": TELEGRAM_ID})
    assert response.status_code == 200, response.text
    assert response.json()["logins"] == ["Forgetful"]
    assert response.json()["message"] == "Пароль изменён."
    assert simulator.count_commands("NEWPAS") == 1


def test_recover_without_accounts(base_url):
    assert_envelope(post(base_url, "/api/recover", {"password": "newpass99", "telegram_id": 5}), 404, "no_accounts")


def test_body_request_id_reaches_service_logs(base_url, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="services.registration"):
        post(base_url, "/api/register", register_body(login="Body Logged", **{"Request-Id": "body-trace-0001"}))
    records = [r for r in caplog.records if r.name.startswith("services.registration")]
    assert records
    assert all(record.request_id == "body-trace-0001" for record in records)


def test_request_id_reaches_service_logs(base_url, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="services.registration"):
        post(base_url, "/api/register", register_body(login="Logged One"), **{"X-Request-Id": "trace-me-0001"})
    records = [r for r in caplog.records if r.name.startswith("services.registration")]
    assert records
    assert all(record.request_id == "trace-me-0001" for record in records)


def test_request_id_in_access_log(base_url, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="nameko.web.server"):
        requests.get(f"{base_url}/health", headers={"X-Request-Id": "access-log-0001"}, timeout=5)
        requests.get(f"{base_url}/no/such/route", headers={"X-Request-Id": "access-log-0002"}, timeout=5)
        time.sleep(0.2)  # the line is written after the response
    lines = {record.request_id: record.getMessage() for record in caplog.records
             if record.name == "nameko.web.server"}
    assert "GET /health" in lines["access-log-0001"]
    assert "GET /no/such/route" in lines["access-log-0002"]


# RATE LIMITS


@pytest.fixture
def limited_url(runner_factory, gateway_config):
    config = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"], "ip_limit": "3/minute",
                                            "key_limit": "1000/minute", "account_limit": "3/minute"}}
    return start(runner_factory, config, GatewayService, RegistrationService, StatusService)


def test_ip_limit_counts_bad_keys(limited_url):
    for _ in range(3):
        assert post(limited_url, "/api/register", register_body(), key="guess").status_code == 401
    response = post(limited_url, "/api/register", register_body(), key="guess")
    body = assert_envelope(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert str(retry_after) in body["message"]


def test_status_rate_limited_per_address(limited_url):
    statuses = [requests.get(f"{limited_url}/api/server/status", timeout=5).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_key_limit(runner_factory, gateway_config):
    config = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"], "key_limit": "2/minute"}}
    base_url = start(runner_factory, config, GatewayService, RegistrationService, StatusService)
    assert post(base_url, "/api/register", register_body(login="Key One")).status_code == 200
    assert post(base_url, "/api/register", register_body(login="Key Two")).status_code == 200
    assert_envelope(post(base_url, "/api/register", register_body(login="Key Three")), 429, "rate_limited")
    assert post(base_url, "/api/register", register_body(login="Other Key"), key=OTHER_KEY).status_code == 200


def test_bad_api_key_config_stops_start(runner_factory, gateway_config):
    config = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"], "api_keys": "site:not-a-hash"}}
    runner = runner_factory(config, GatewayService)
    with pytest.raises(ValueError, match="64-digit hex"):
        runner.start()


def test_client_errors_logged_without_traceback():
    from services.common.errors import InternalError, LoginTaken
    from services.common.request_context import QuietClientErrors

    quiet = QuietClientErrors()
    for error, keeps_traceback in ((LoginTaken("taken"), False), (InternalError("boom"), True)):
        try:
            raise error
        except Exception:
            import sys

            record = logging.LogRecord("nameko", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
        assert quiet.filter(record) is True
        assert (record.exc_info is not None) is keeps_traceback


# INPUT THAT ONCE GAVE 500


def test_login_with_trailing_newline_is_400(base_url, gamedb, simulator):
    body = assert_envelope(post(base_url, "/api/register", register_body(login="Bob\n")), 400, "validation_error")
    assert set(body["fields"]) == {"login"}
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM tzr_registrations")
        assert cursor.fetchone() == (0,)
    assert simulator.count_commands("ADDUSER") == 0


def test_look_alike_login_rejected(base_url):
    body = assert_envelope(post(base_url, "/api/register", register_body(login=" Gate Keeper"),
                                **{"Accept-Language": "en"}), 400, "validation_error")
    assert body["fields"] == {"login": "The login must not start or end with a space or have two spaces in a row."}


def test_deeply_nested_json_is_400(base_url):
    for depth in (2000, 33):
        data = b"[" * depth + b"]" * depth
        response = requests.post(f"{base_url}/api/register", data=data, timeout=10,
                                 headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
        body = assert_envelope(response, 400, "bad_request")
        assert body["message"] == "Неверный запрос: вложенность JSON глубже 32 уровней"
    response = requests.post(f"{base_url}/api/register", data=b"[" * 40 + b"]" * 40, timeout=10,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json",
                                      "Accept-Language": "en"})
    assert assert_envelope(response, 400, "bad_request")["message"] == (
        "Bad request: the JSON nests deeper than 32 levels")
    shallow = {**register_body(login="Nested Ok"), "username": "[[[{{{"}
    assert post(base_url, "/api/register", shallow).status_code == 200


@pytest.mark.parametrize("data, content_type, ru, en", [
    (b"{}", "text/plain", "тело должно быть в формате JSON (Content-Type: application/json)",
     "Content-Type must be application/json"),
    (b"{not json", "application/json", "тело не является правильным JSON", "the body is not valid JSON"),
    (b"[1, 2]", "application/json", "тело должно быть объектом JSON", "the body must be a JSON object"),
])
def test_bad_body_reason_in_the_message_language(base_url, data, content_type, ru, en):
    for language, reason, prefix in (("ru", ru, "Неверный запрос: "), ("en", en, "Bad request: ")):
        response = requests.post(f"{base_url}/api/register", data=data, timeout=10,
                                 headers={"X-API-Key": API_KEY, "Content-Type": content_type,
                                          "Accept-Language": language})
        assert assert_envelope(response, 400, "bad_request")["message"] == prefix + reason


def test_chunked_body_is_read(base_url, gamedb):
    data = json.dumps(register_body(login="Chunky")).encode()

    def chunks():
        for start in range(0, len(data), 10):
            yield data[start:start + 10]

    response = requests.post(f"{base_url}/api/register", data=chunks(), timeout=30,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["login"] == "Chunky"


def test_chunked_body_over_limit_is_413(base_url, simulator):
    def chunks():
        yield b'{"login": "Big", "username": "'
        for _ in range(10):
            yield b"u" * 1000
        yield b'"}'

    response = requests.post(f"{base_url}/api/register", data=chunks(), timeout=30,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert_envelope(response, 413, "payload_too_large")
    assert simulator.count_commands("ADDUSER") == 0


# REQUEST IDS


def test_same_request_id_other_password_409(base_url, simulator):
    headers = {"X-Request-Id": "site-request-0099"}
    assert post(base_url, "/api/register", register_body(login="Pass Keeper"), **headers).status_code == 200
    other = {**register_body(login="Pass Keeper"), "password": "different1"}
    assert_envelope(post(base_url, "/api/register", other, **headers), 409, "request_id_reused")
    assert simulator.find_account("Pass Keeper").password_hash == transform_password("qwerty12")


@pytest.mark.parametrize("path, body", [("/api/register", register_body(login="Bad Id")),
                                        ("/api/recover", {"password": "newpass99", "telegram_id": TELEGRAM_ID})])
def test_invalid_request_id_rejected_on_account_routes(base_url, simulator, path, body):
    response = post(base_url, path, body, **{"X-Request-Id": "short", "Accept-Language": "en"})
    result = assert_envelope(response, 400, "validation_error")
    assert result["fields"] == {"X-Request-Id": "The request id must be 8 to 64 letters, digits, '-' or '_'."}
    assert result["request_id"] != "short"
    assert simulator.commands() == []


def test_invalid_body_request_id_rejected(base_url):
    response = post(base_url, "/api/register", register_body(login="Body Bad", **{"Request-Id": "bad id!"}))
    assert set(assert_envelope(response, 400, "validation_error")["fields"]) == {"Request-Id"}


def test_invalid_request_id_replaced_elsewhere(base_url):
    response = requests.get(f"{base_url}/api/server/status", headers={"X-Request-Id": "short"}, timeout=10)
    assert response.status_code == 200
    assert len(response.headers["X-Request-Id"]) == 32


# GAME SERVER OUTCOMES


def test_recover_partial_failure_lists_logins(base_url, gamedb, simulator):
    post(base_url, "/api/register", register_body(login="Real Char"))
    with gamedb.cursor() as cursor:
        cursor.execute("INSERT INTO tgplayers (telegram_id, login) VALUES (%s, 'Lost Char')", (TELEGRAM_ID,))

    response = post(base_url, "/api/recover", {"password": "newpass99", "telegram_id": TELEGRAM_ID})

    body = assert_envelope(response, 502, "password_partly_changed")
    assert body["logins"] == ["Real Char"]
    assert body["failed"] == ["Lost Char"]
    assert body["message"].startswith("Пароль изменён не для всех персонажей")
    assert "Real Char" in body["message"]
    assert "Lost Char" in body["message"]


def test_recover_all_changed_lists_no_failures(base_url, simulator):
    post(base_url, "/api/register", register_body(login="Only Char"))
    response = post(base_url, "/api/recover", {"password": "newpass99", "telegram_id": TELEGRAM_ID})
    assert response.status_code == 200, response.text
    assert response.json()["failed"] == []


def test_stored_no_reply_failure_message(base_url, simulator):
    simulator.set_fault("drop", commands=["ADDUSER"], count=1, apply=False)
    headers = {"X-Request-Id": "site-request-lost1"}
    assert_envelope(post(base_url, "/api/register", register_body(login="Never Seen"), **headers),
                    409, "request_in_progress")
    time.sleep(1.2)  # pending_timeout is 1 s in the test config

    body = assert_envelope(post(base_url, "/api/register", register_body(login="Never Seen"), **headers),
                           502, "game_server_no_reply")
    assert "не ответил" in body["message"]
    assert "новым идентификатором" in body["message"]


def test_login_data_without_bot_token_is_400(runner_factory, gateway_config, telegram, monkeypatch, caplog):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    base_url = start(runner_factory, gateway_config, GatewayService, RegistrationService)
    widget = {"id": 48, "auth_date": int(time.time()), "hash": "0" * 64}
    body = {"login": "No Token", "password": "qwerty12", "gender": 0, "telegram_auth": widget}
    with caplog.at_level(logging.WARNING, logger="services.registration"):
        response = post(base_url, "/api/register", body, **{"Accept-Language": "en"})
    answer = assert_envelope(response, 400, "validation_error")
    assert answer["fields"] == {
        "telegram_auth": "Telegram login is not set up on this server: send telegram_id instead."}
    assert "TELEGRAM_BOT_TOKEN" in caplog.text


# SERVICES DOWN OR BUSY


def test_stopped_service_gives_503_at_once_and_no_ghost(runner_factory, container_factory, gateway_config,
                                                         gamedb, simulator):
    base_url = start(runner_factory, gateway_config, GatewayService)
    registration = container_factory(RegistrationService, gateway_config)
    registration.start()
    registration.stop()  # its queue stays, without a consumer

    started = time.monotonic()
    response = post(base_url, "/api/register", register_body(login="Ghost"))
    assert_envelope(response, 503, "service_unavailable")
    assert time.monotonic() - started < 5

    container_factory(RegistrationService, gateway_config).start()
    time.sleep(2)
    assert simulator.count_commands("ADDUSER") == 0
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM tzr_registrations")
        assert cursor.fetchone() == (0,)


def test_queued_request_past_deadline_not_run(runner_factory, container_factory, gateway_config, gamedb,
                                               simulator, caplog):
    gateway = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"],
                                             "timeouts": {**gateway_config["GATEWAY"]["timeouts"], "register": 2}}}
    base_url = start(runner_factory, gateway, GatewayService)
    # One worker, busy for 4 s with the first request, while the gateway waits 2 s.
    registration = {**gateway_config, "max_workers": 1,
                    "REGISTRATION": {**gateway_config["REGISTRATION"], "reply_timeout": 10}}
    container_factory(RegistrationService, registration).start()
    simulator.set_fault("slow", commands=["ADDUSER"], count=1, delay=4)

    with caplog.at_level(logging.WARNING, logger="services.registration"):
        first = eventlet.spawn(post, base_url, "/api/register", register_body(login="Slow First"))
        time.sleep(0.3)
        second = post(base_url, "/api/register", register_body(login="Queued Second"),
                      **{"X-Request-Id": "queued-request-2"})
        assert_envelope(first.wait(), 503, "service_unavailable")
        assert_envelope(second, 503, "service_unavailable")
        time.sleep(4)

    assert [command.attributes["l"] for command in simulator.commands("ADDUSER")] == ["Slow First"]
    with gamedb.cursor() as cursor:
        cursor.execute("SELECT login FROM tzr_registrations")
        assert cursor.fetchall() == (("Slow First",),)
    assert "registration queued-request-2: the caller stopped waiting" in caplog.text


def test_ready_answer_cached_for_a_second(runner_factory, gateway_config, monkeypatch):
    rounds = []
    check = GatewayService._check_readiness

    def counted(self):
        rounds.append(time.monotonic())
        return check(self)

    monkeypatch.setattr(GatewayService, "_check_readiness", counted)
    base_url = start(runner_factory, gateway_config, GatewayService, RegistrationService)

    answers = [requests.get(f"{base_url}/ready", timeout=10) for _ in range(3)]
    assert len(rounds) == 1
    assert len({answer.text for answer in answers}) == 1
    assert answers[0].json()["checks"]["registration"] == {"mariadb": True, "redis": True}
    time.sleep(1.1)
    requests.get(f"{base_url}/ready", timeout=10)
    assert len(rounds) == 2


# HTTP DETAILS


def test_unknown_method_counted_as_other(base_url):
    response = requests.request("FROBNICATE", f"{base_url}/health", timeout=5)
    assert response.status_code == 405
    metrics = requests.get(f"{base_url}/metrics", timeout=5).text
    assert "FROBNICATE" not in metrics
    assert 'method="other"' in metrics


def test_405_names_allowed_methods(base_url):
    response = requests.delete(f"{base_url}/api/register", timeout=5)
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "OPTIONS, POST"


def test_cors_exposes_request_id_and_retry_after(base_url):
    response = requests.get(f"{base_url}/api/server/status", headers={"Origin": ORIGIN}, timeout=5)
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-Id, Retry-After"


# LOGS AND SETTINGS


def test_client_error_logged_once_at_info(base_url, caplog):
    caplog.handler.addFilter(QuietClientErrors())
    with caplog.at_level(logging.INFO):
        post(base_url, "/api/register", register_body(login="x"), **{"X-Request-Id": "quiet-error-01"})
    records = [record for record in caplog.records if "invalid fields: login" in record.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert records[0].exc_info is None


def test_bad_rate_limit_names_setting(runner_factory, gateway_config):
    config = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"], "ip_limit": "five/minute"}}
    with pytest.raises(ValueError, match=r"config GATEWAY.ip_limit \(TZR_IP_LIMIT\) is not a rate limit"):
        runner_factory(config, GatewayService).start()


def test_bad_api_key_entry_not_echoed(runner_factory, gateway_config):
    raw_key = "raw-secret-" + uuid.uuid4().hex
    config = {**gateway_config, "GATEWAY": {**gateway_config["GATEWAY"],
                                            "api_keys": f"site:{hash_api_key(API_KEY)},{raw_key}"}}
    with pytest.raises(ValueError, match="entry 2 is not name:sha256hex") as error:
        runner_factory(config, GatewayService).start()
    assert raw_key not in str(error.value)
    assert "TZR_API_KEYS" in str(error.value)


def test_openapi_matches_the_api(base_url):
    document = requests.get(f"{base_url}/api/openapi.json", timeout=5).json()
    assert document["info"]["version"] == importlib.metadata.version("tzr-host")
    register = document["paths"]["/api/register"]["post"]
    assert {"404", "405", "500"} <= set(register["responses"])
    assert register["responses"]["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/RetryAfter"}
    assert "RetryAfter" in document["components"]["headers"]
    body = register["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False
    assert body["anyOf"] == [{"required": ["telegram_id"]}, {"required": ["telegram_auth"]}]
    assert {"Request-Id", "user_Country", "user_created_at"} <= set(body["properties"])
    recover = document["paths"]["/api/recover"]["post"]["responses"]
    assert "password_partly_changed" in recover["502"]["description"]
    assert "504" in recover
    ready = document["paths"]["/ready"]["get"]["responses"]
    assert ready["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ready"}
    assert "Ready" in document["components"]["schemas"]
