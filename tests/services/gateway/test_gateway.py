"""The HTTP gateway in front of the registration and status services, all on real RabbitMQ."""

import inspect
import json
import logging
import socket
import time
import uuid

import pytest
import requests

from services.common.request_context import RequestIdFilter
from services.battles.service import BattlesService
from services.gateway.guard import hash_api_key
from services.gateway.service import GatewayService
from services.ingest.service import IngestService
from services.registration.service import RegistrationService
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
    }
    base_url = start(runner_factory, config, GatewayService, RegistrationService, StatusService,
                     BattlesService, IngestService)
    response = requests.get(f"{base_url}/ready", timeout=10)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["redis"] is True
    assert checks["registration"] == {"mariadb": True, "redis": True}
    assert checks["status"] == {"mariadb": True, "redis": True, "game_port": True}
    assert checks["battles"] == {"postgres": True}
    assert checks["ingest"] == {"postgres": True, "drop_dir": True}


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


def test_request_id_reaches_service_logs(base_url, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="services.registration"):
        post(base_url, "/api/register", register_body(login="Logged One"), **{"X-Request-Id": "trace-me-0001"})
    records = [r for r in caplog.records if r.name.startswith("services.registration")]
    assert records
    assert all(record.request_id == "trace-me-0001" for record in records)


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
