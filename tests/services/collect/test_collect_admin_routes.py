"""The gateway's admin collection routes, with the ingest service, RabbitMQ, Redis and PostgreSQL."""

import socket
import uuid

import pytest
import requests

from collect_helpers import FIRST_ID, wait_for_job
from services.gateway.guard import hash_api_key
from services.gateway.service import GatewayService
from services.ingest.service import IngestService


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ADMIN_TOKEN = "admin-token-" + uuid.uuid4().hex
OTHER_TOKEN = "ops-token-" + uuid.uuid4().hex
API_KEY = "site-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def admin_config(collect_config, redis_url):
    return {
        **collect_config,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "REDIS": {"url": redis_url},
        "GATEWAY": {
            "api_keys": f"site:{hash_api_key(API_KEY)}",
            "admin_tokens": f"admin:{hash_api_key(ADMIN_TOKEN)},ops:{hash_api_key(OTHER_TOKEN)}",
            "ip_limit": "1000/minute",
            "key_limit": "1000/minute",
            "timeouts": {"ingest": 10},
        },
    }


def run(runner_factory, config) -> str:
    runner = runner_factory(config, GatewayService, IngestService)
    runner.start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/admin/collect"


@pytest.fixture
def url(runner_factory, admin_config):
    return run(runner_factory, admin_config)


def bearer(token=ADMIN_TOKEN, **headers) -> dict:
    return {"Authorization": f"Bearer {token}", **headers}


def assert_envelope(response, status, code) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def test_admin_job_lifecycle(url, collect_tables):
    started = requests.post(url, json={"direction": "range", "start": FIRST_ID, "count": 3}, headers=bearer(),
                            timeout=30)
    assert started.status_code == 200, started.text
    job = started.json()["job"]
    assert (job["direction"], job["start"], job["end"], job["status"]) == ("range", FIRST_ID, FIRST_ID + 2, "running")
    wait_for_job(collect_tables, job["id"])

    progress = requests.get(f"{url}/{job['id']}", headers=bearer(OTHER_TOKEN), timeout=30)
    listed = requests.get(url, params={"limit": 5}, headers=bearer(), timeout=30)
    aborted = requests.post(f"{url}/{job['id']}/abort", headers=bearer(), timeout=30)

    assert progress.status_code == 200, progress.text
    assert progress.json()["job"]["counts"]["fetched"] == 3
    assert progress.json()["job"]["status"] == "finished"
    assert [entry["id"] for entry in listed.json()["jobs"]] == [job["id"]]
    assert aborted.status_code == 200
    assert aborted.json()["job"]["status"] == "finished"


def test_admin_abort_running_job(url, collect_tables, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.3)
    job = requests.post(url, json={"direction": "forward", "start": FIRST_ID}, headers=bearer(), timeout=30).json()["job"]

    aborted = requests.post(f"{url}/{job['id']}/abort", headers=bearer(), timeout=30)

    assert aborted.json()["job"]["abort_requested"] is True
    assert wait_for_job(collect_tables, job["id"])["status"] == "aborted"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Bearer {API_KEY}"},
        {"X-API-Key": API_KEY},
    ],
)
def test_admin_routes_need_bearer_token(url, collect_tables, headers):
    for response in (
        requests.post(url, json={"direction": "range", "start": FIRST_ID, "count": 1}, headers=headers, timeout=30),
        requests.get(url, headers=headers, timeout=30),
        requests.get(f"{url}/1", headers=headers, timeout=30),
        requests.post(f"{url}/1/abort", headers=headers, timeout=30),
    ):
        body = assert_envelope(response, 401, "invalid_admin_token")
        assert body["message"] == "Токен администратора не указан или неверен."
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert collect_tables.execute("SELECT count(*) FROM collect_jobs").fetchone()[0] == 0


def test_lowercase_bearer_scheme_accepted(url):
    response = requests.get(url, headers={"Authorization": f"bearer {ADMIN_TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text


def test_wrong_token_message_in_english(url):
    response = requests.get(url, headers=bearer("nope", **{"Accept-Language": "en"}), timeout=30)
    body = assert_envelope(response, 401, "invalid_admin_token")
    assert body["message"] == "The admin token is missing or invalid."


@pytest.mark.parametrize(
    "body, field, russian",
    [
        ({"direction": "range", "start": "5", "end": 9}, "start", "Нужно целое число."),
        ({"direction": "range", "start": FIRST_ID, "end": FIRST_ID - 1}, "end",
         "Конец (end) не может быть меньше начала (start)."),
        ({"direction": "sideways", "start": FIRST_ID}, "direction", "Направление: forward, backward или range."),
        ({"direction": "range", "start": FIRST_ID, "end": FIRST_ID + 2, "count": 3}, "count",
         "Укажите end или count, но не оба сразу."),
        ({"direction": "range", "start": -4, "end": 9}, "start",
         "Нужен номер боя: целое число от 1 до 9223372036854775807."),
        ({"direction": "range", "start": 5, "end": 9, "extra": 1}, "extra", "Неизвестное поле."),
    ],
)
def test_bad_bodies_name_the_field(url, body, field, russian):
    response = requests.post(url, json=body, headers=bearer(), timeout=30)

    envelope = assert_envelope(response, 400, "validation_error")
    assert envelope["fields"] == {field: russian}


def test_bad_body_field_in_english(url):
    response = requests.post(url, json={"direction": "range", "start": 9, "end": 5},
                             headers=bearer(**{"Accept-Language": "en"}), timeout=30)
    envelope = assert_envelope(response, 400, "validation_error")
    assert envelope["fields"] == {"end": "The end must not be less than the start."}


@pytest.mark.parametrize(
    "data, content_type",
    [
        ("[1, 2]", "application/json"),
        ("{not json", "application/json"),
        ('{"direction": "range"}', "text/plain"),
    ],
)
def test_malformed_bodies(url, data, content_type):
    response = requests.post(url, data=data, headers=bearer(**{"Content-Type": content_type}), timeout=30)
    assert_envelope(response, 400, "bad_request")


def test_unknown_and_invalid_job_ids(url):
    missing = requests.get(f"{url}/987654", headers=bearer(), timeout=30)
    invalid = requests.get(f"{url}/abc", headers=bearer(), timeout=30)
    bad_limit = requests.get(url, params={"limit": "many"}, headers=bearer(), timeout=30)
    big_limit = requests.get(url, params={"limit": 500}, headers=bearer(), timeout=30)

    body = assert_envelope(missing, 404, "collect_job_not_found")
    assert body["message"] == "Задание сбора логов № 987654 не найдено."
    assert assert_envelope(invalid, 400, "validation_error")["fields"] == {
        "job_id": "Номер задания: положительное целое число."
    }
    assert list(assert_envelope(bad_limit, 400, "validation_error")["fields"]) == ["limit"]
    assert list(assert_envelope(big_limit, 400, "validation_error")["fields"]) == ["limit"]


def test_second_job_same_direction_conflicts(url, game):
    game.set_fault("slow", commands={"GETMYBATTLE"}, delay=0.3)
    first = requests.post(url, json={"direction": "range", "start": FIRST_ID, "count": 20}, headers=bearer(),
                          timeout=30).json()["job"]

    second = requests.post(url, json={"direction": "range", "start": FIRST_ID, "count": 2}, headers=bearer(),
                           timeout=30)

    body = assert_envelope(second, 409, "collect_job_running")
    assert str(first["id"]) in body["message"]
    requests.post(f"{url}/{first['id']}/abort", headers=bearer(), timeout=30)


def test_admin_rate_limited_before_token_check(runner_factory, admin_config):
    admin_config["GATEWAY"]["ip_limit"] = "3/minute"
    url = run(runner_factory, admin_config)

    answers = [requests.get(url, headers=bearer("wrong"), timeout=30) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert requests.get(url, headers=bearer(), timeout=30).status_code == 429


def test_no_admin_tokens_configured(runner_factory, admin_config):
    admin_config["GATEWAY"]["admin_tokens"] = ""
    url = run(runner_factory, admin_config)

    assert_envelope(requests.get(url, headers=bearer(), timeout=30), 401, "invalid_admin_token")


def test_malformed_admin_tokens_stop_gateway(runner_factory, admin_config):
    admin_config["GATEWAY"]["admin_tokens"] = "admin:not-a-hash"
    runner = runner_factory(admin_config, GatewayService)

    with pytest.raises(ValueError, match="admin_tokens.*64-digit hex SHA-256 hash"):
        runner.start()
