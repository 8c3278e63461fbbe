"""The fake Telegram Bot API: getChatMember replies, errors and simulated outages."""

import time

import eventlet
import pytest
import requests

from fakes.telegram import DEFAULT_CHAT_ID, FakeTelegram


USER_ID = 555000111


def get_chat_member(telegram, user_id=USER_ID, token=None, chat_id=None, timeout=5.0):
    token = telegram.token if token is None else token
    chat_id = telegram.chat_id if chat_id is None else chat_id
    return requests.get(
        f"{telegram.base_url}/bot{token}/getChatMember",
        params={"chat_id": chat_id, "user_id": user_id},
        timeout=timeout,
    )


def test_base_url_is_loopback(telegram):
    assert telegram.base_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("status", ["creator", "administrator", "member", "left", "kicked"])
def test_member_status(telegram, status):
    telegram.add_member(USER_ID, status)

    response = get_chat_member(telegram)

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["result"]["status"] == status
    assert body["result"]["user"]["id"] == USER_ID
    assert "is_member" not in body["result"]


@pytest.mark.parametrize("is_member", [True, False])
def test_restricted_member(telegram, is_member):
    telegram.add_member(USER_ID, "restricted", is_member=is_member)

    body = get_chat_member(telegram).json()

    assert body["result"]["status"] == "restricted"
    assert body["result"]["is_member"] is is_member


def test_unknown_user(telegram):
    response = get_chat_member(telegram)

    assert response.status_code == 400
    assert response.json() == {"ok": False, "error_code": 400, "description": "Bad Request: user not found"}


def test_wrong_token(telegram):
    telegram.add_member(USER_ID)

    response = get_chat_member(telegram, token="123:wrong")

    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


def test_unknown_chat(telegram):
    telegram.add_member(USER_ID)

    response = get_chat_member(telegram, chat_id=-100999)

    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: chat not found"


def test_chat_id_matches_as_text(telegram):
    telegram.add_member(USER_ID)

    response = get_chat_member(telegram, chat_id=str(DEFAULT_CHAT_ID))

    assert response.status_code == 200


def test_invalid_user_id(telegram):
    response = get_chat_member(telegram, user_id="abc")

    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: invalid user_id specified"


def test_unknown_method(telegram):
    response = requests.get(f"{telegram.base_url}/bot{telegram.token}/getMe", timeout=5)

    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_post_form_and_json(telegram):
    telegram.add_member(USER_ID, "administrator")
    url = f"{telegram.base_url}/bot{telegram.token}/getChatMember"
    params = {"chat_id": telegram.chat_id, "user_id": USER_ID}

    form_reply = requests.post(url, data=params, timeout=5)
    json_reply = requests.post(url, json=params, timeout=5)

    assert form_reply.json()["result"]["status"] == "administrator"
    assert json_reply.json()["result"]["status"] == "administrator"


def test_throttled(telegram):
    telegram.add_member(USER_ID)
    telegram.retry_after = 7

    response = get_chat_member(telegram)

    assert response.status_code == 429
    body = response.json()
    assert body["ok"] is False
    assert body["error_code"] == 429
    assert body["description"] == "Too Many Requests: retry after 7"
    assert body["parameters"] == {"retry_after": 7}


def test_throttling_lifted(telegram):
    telegram.add_member(USER_ID)
    telegram.retry_after = 7
    get_chat_member(telegram)
    telegram.retry_after = None

    assert get_chat_member(telegram).status_code == 200


def test_down_closes_connection(telegram):
    telegram.add_member(USER_ID)
    telegram.down = "close"

    with pytest.raises(requests.ConnectionError):
        get_chat_member(telegram)


def test_down_bad_gateway(telegram):
    telegram.add_member(USER_ID)
    telegram.down = "bad_gateway"

    response = get_chat_member(telegram)

    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"


def test_unknown_down_mode_rejected(telegram):
    with pytest.raises(ValueError):
        telegram.down = "sideways"


def test_back_up_after_outage(telegram):
    telegram.add_member(USER_ID)
    telegram.down = "close"
    with pytest.raises(requests.ConnectionError):
        get_chat_member(telegram)
    telegram.down = None

    assert get_chat_member(telegram).status_code == 200


def test_delay_makes_client_time_out(telegram):
    telegram.add_member(USER_ID)
    telegram.delay = 2.0

    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        get_chat_member(telegram, timeout=0.3)

    assert time.monotonic() - started < 1.5


def test_delayed_replies_overlap(telegram):
    # Each request waits in its own green thread, so four 0.4 s delays take
    # about 0.4 s in all, not 1.6 s.
    telegram.add_member(USER_ID)
    telegram.delay = 0.4
    pool = eventlet.GreenPool()

    started = time.monotonic()
    statuses = list(pool.imap(lambda _: get_chat_member(telegram).status_code, range(4)))
    elapsed = time.monotonic() - started

    assert statuses == [200] * 4
    assert elapsed < 1.2


def test_call_counter(telegram):
    telegram.add_member(USER_ID)

    get_chat_member(telegram)
    get_chat_member(telegram, token="123:wrong")
    get_chat_member(telegram, user_id=1)

    assert telegram.call_count == 3
    assert telegram.calls[0].method == "getChatMember"
    assert telegram.calls[0].params == {"chat_id": str(DEFAULT_CHAT_ID), "user_id": str(USER_ID)}
    assert telegram.calls[1].token == "123:wrong"


def test_add_member_rejects_unknown_status(telegram):
    with pytest.raises(ValueError):
        telegram.add_member(USER_ID, "owner")


def test_stop_cuts_delay_short():
    fake = FakeTelegram().start()
    fake.add_member(USER_ID)
    fake.delay = 30
    waiter = eventlet.spawn(get_chat_member, fake, timeout=10)
    eventlet.sleep(0.2)

    started = time.monotonic()
    fake.stop()
    stop_seconds = time.monotonic() - started
    waiter.kill()

    assert stop_seconds < 2


def test_stopped_server_refuses_connections():
    fake = FakeTelegram().start()
    base_url = fake.base_url
    fake.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/bot{fake.token}/getChatMember", timeout=2)


def test_base_url_before_start():
    with pytest.raises(RuntimeError):
        FakeTelegram().base_url
