import hashlib
import hmac

import pytest

from services.common.errors import BadRequest, TelegramAuthFailed, ValidationFailed
from services.registration.schemas import check_request_id, parse_recover, parse_register
from services.registration.telegram import verify_login_widget


VALID = {"login": "Ranger Ola", "password": "qwerty12", "gender": 1, "telegram_id": 555000111}


def fields_of(payload) -> dict:
    with pytest.raises(ValidationFailed) as error:
        parse_register(payload)
    return error.value.fields


def test_valid_request_parsed():
    request = parse_register({**VALID, "username": "ola", "user_Country": "RU", "Request-Id": "x"})
    assert request.login == "Ranger Ola"
    assert request.password == "qwerty12"
    assert request.gender == 1
    assert request.telegram_id == 555000111
    assert request.username == "ola"
    assert "qwerty12" not in repr(request)


@pytest.mark.parametrize("login", ["Странник", "abc", "A-b_c 1", "ёлка", "x" * 3 + "1" * 13, "Ranger Ola 2"])
def test_logins_accepted(login):
    assert parse_register({**VALID, "login": login}).login == login


@pytest.mark.parametrize(
    ("login", "key"),
    [
        ("ab", "login.length"),
        ("a" * 17, "login.length"),
        ("Mixedяз", "login.charset"),
        ("1234", "login.charset"),
        ("___", "login.charset"),
        ("bad!", "login.charset"),
        ("tab\there", "login.charset"),
        ('x"/><ADDUSER l="evil', "login.length"),
        ('x"/><A', "login.charset"),
        ("Ölaf", "login.charset"),
        ("Bob\n", "login.charset"),
        ("Страж\n", "login.charset"),
        (" Bob", "login.spaces"),
        ("Bob ", "login.spaces"),
        ("Bob  Smith", "login.spaces"),
        ("  Страж", "login.spaces"),
        (123, "field.string"),
        (None, "field.string"),
    ],
)
def test_logins_rejected(login, key):
    assert fields_of({**VALID, "login": login}) == {"login": key}


@pytest.mark.parametrize(
    ("password", "key"),
    [("short", "password.length"), ("x" * 21, "password.length"), ("пароль123", "password.charset"),
     ("tab\tpass1", "password.charset"), ("qwerty12\n", "password.charset"), (123456, "field.string")],
)
def test_passwords_rejected(password, key):
    assert fields_of({**VALID, "password": password}) == {"password": key}


def test_password_with_space_accepted():
    assert parse_register({**VALID, "password": "my pass123"}).password == "my pass123"


@pytest.mark.parametrize("gender", [True, False, "1", 1.0, 2, -1, None])
def test_gender_strict(gender):
    assert fields_of({**VALID, "gender": gender}) == {"gender": "gender.choice"}


@pytest.mark.parametrize("telegram_id", [0, -5, True, "123", 123.0, 2**63])
def test_telegram_id_strict(telegram_id):
    assert fields_of({**VALID, "telegram_id": telegram_id}) == {"telegram_id": "telegram_id.positive"}


def test_username_limits():
    assert fields_of({**VALID, "username": "u" * 65}) == {"username": "username.length"}
    assert fields_of({**VALID, "username": 5}) == {"username": "field.string"}
    assert parse_register({**VALID, "username": "u" * 64}).username == "u" * 64


def test_every_bad_field_reported():
    assert fields_of({"login": "a", "password": 1, "gender": 3, "extra": 1}) == {
        "login": "login.length",
        "password": "field.string",
        "gender": "gender.choice",
        "telegram_id": "field.required",
        "extra": "field.unknown",
    }


def test_missing_fields_reported():
    assert fields_of({}) == {
        "login": "field.required",
        "password": "field.required",
        "gender": "field.required",
        "telegram_id": "field.required",
    }


@pytest.mark.parametrize("payload", [None, [], "text", 5])
def test_non_object_rejected(payload):
    with pytest.raises(BadRequest):
        parse_register(payload)


def test_telegram_auth_shape_checked():
    assert fields_of({**VALID, "telegram_auth": {"id": "1"}}) == {"telegram_auth": "telegram_auth.invalid"}
    request = parse_register({**{k: v for k, v in VALID.items() if k != "telegram_id"},
                              "telegram_auth": {"id": 7, "auth_date": 1, "hash": "ab"}})
    assert request.telegram_id is None
    assert request.telegram_auth["id"] == 7


@pytest.mark.parametrize("telegram_id", [-5, 0, 2**63])
def test_telegram_auth_id_checked_like_direct_id(telegram_id):
    auth = {"id": telegram_id, "auth_date": 1, "hash": "ab"}
    payload = {**{k: v for k, v in VALID.items() if k != "telegram_id"}, "telegram_auth": auth}
    assert fields_of(payload) == {"telegram_auth": "telegram_id.positive"}


def test_recover_parsed_and_checked():
    request = parse_recover({"password": "newpass1", "telegram_id": 5})
    assert (request.password, request.telegram_id) == ("newpass1", 5)
    with pytest.raises(ValidationFailed) as error:
        parse_recover({"password": "x", "login": "y"})
    assert error.value.fields == {"password": "password.length", "login": "field.unknown",
                                  "telegram_id": "field.required"}


@pytest.mark.parametrize("request_id", ["abc", "x" * 65, "has space!", None, 123, "ok/../x", "abcdefgh\n"])
def test_request_id_rejected(request_id):
    with pytest.raises(ValidationFailed):
        check_request_id(request_id)


def test_request_id_accepted():
    assert check_request_id("7f1c-aa_99xx") == "7f1c-aa_99xx"


# TELEGRAM LOGIN WIDGET

TOKEN = "123456:test-token"


def signed(data: dict, token: str = TOKEN) -> dict:
    check = "\n".join(f"{key}={data[key]}" for key in sorted(data))
    secret = hashlib.sha256(token.encode()).digest()
    return {**data, "hash": hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()}


def test_widget_verified():
    data = signed({"id": 42, "first_name": "Ola", "username": "ola", "auth_date": 1_760_000_000})
    assert verify_login_widget(data, TOKEN, max_age=3600, now=1_760_000_100) == 42


@pytest.mark.parametrize(
    "change",
    [
        lambda d: {**d, "id": 43},
        lambda d: {**d, "first_name": "Eve"},
        lambda d: {**d, "hash": "0" * 64},
        lambda d: {k: v for k, v in d.items() if k != "hash"},
    ],
)
def test_widget_tampering_rejected(change):
    data = signed({"id": 42, "first_name": "Ola", "auth_date": 1_760_000_000})
    with pytest.raises(TelegramAuthFailed):
        verify_login_widget(change(data), TOKEN, max_age=3600, now=1_760_000_100)


def test_widget_wrong_token_rejected():
    data = signed({"id": 42, "auth_date": 1_760_000_000}, token="other:token")
    with pytest.raises(TelegramAuthFailed):
        verify_login_widget(data, TOKEN, max_age=3600, now=1_760_000_100)


@pytest.mark.parametrize("now", [1_760_000_000 + 3601, 1_760_000_000 - 301])
def test_widget_age_checked(now):
    data = signed({"id": 42, "auth_date": 1_760_000_000})
    with pytest.raises(TelegramAuthFailed, match="outside the accepted"):
        verify_login_widget(data, TOKEN, max_age=3600, now=now)
