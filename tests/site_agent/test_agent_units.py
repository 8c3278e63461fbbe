"""The agent's pure parts: settings, the token file, job checks, error texts and the backoff."""

import base64
import sys
import time

import jwt
import pytest

from site_agent import config, crypto, protocol
from site_agent.agent import Backoff
from site_agent.auth import TokenError, TokenFile, parse_token
from site_agent.site import build_job


KEY = b"unit-test-secret"
AES = base64.b64encode(bytes(range(32))).decode()


def environment(tmp_path, **extra) -> dict:
    return {"TZR_AGENT_JWT_FILE": str(tmp_path / "token"), "TZR_SITE_HMAC_SECRET": "s", "TZR_SITE_AES_KEY": AES,
            **extra}


# SETTINGS


def test_defaults_are_loopback(tmp_path):
    settings = config.from_environment(environment(tmp_path))
    assert settings.site_url == "ws://127.0.0.1:8765/ws/pull"
    assert "127.0.0.1" in settings.amqp_uri
    assert "127.0.0.1" in settings.redis_url


def test_secrets_stay_out_of_repr(tmp_path):
    settings = config.from_environment(environment(tmp_path, TZR_SITE_HMAC_SECRET="very-secret-value"))
    assert "very-secret-value" not in repr(settings)
    assert repr(bytes(range(32))) not in repr(settings)


def test_secrets_from_files(tmp_path):
    (tmp_path / "hmac").write_text("from-a-file\n")
    (tmp_path / "aes").write_text(AES + "\n")
    env = environment(tmp_path, TZR_SITE_HMAC_SECRET_FILE=str(tmp_path / "hmac"),
                      TZR_SITE_AES_KEY_FILE=str(tmp_path / "aes"))
    del env["TZR_SITE_HMAC_SECRET"], env["TZR_SITE_AES_KEY"]
    settings = config.from_environment(env)
    assert settings.hmac_key == b"from-a-file"
    assert settings.aes_key == bytes(range(32))


@pytest.mark.parametrize("change, match", [
    ({"TZR_SITE_HMAC_SECRET": ""}, "secret TZR_SITE_HMAC_SECRET is not set"),
    ({"TZR_SITE_AES_KEY": "QUJD"}, "32 bytes, got 3"),
    ({"TZR_SITE_AES_KEY": None, "TZR_SITE_AES_KEY_FILE": "/nonexistent/aes"}, "cannot read the secret file"),
    ({"TZR_AGENT_JWT_FILE": ""}, "TZR_AGENT_JWT_FILE is not set"),
    ({"TZR_SITE_URL": "http://127.0.0.1:8765/"}, "must start with ws:// or wss://"),
    ({"TZR_JOB_TTL": "soon"}, "TZR_JOB_TTL must be an integer"),
    ({"TZR_AGENT_CONCURRENCY": "0"}, "TZR_AGENT_CONCURRENCY must be at least 1"),
    ({"TZR_AGENT_BACKOFF_MIN": "5", "TZR_AGENT_BACKOFF_MAX": "1"}, "BACKOFF_MAX must not be below"),
])
def test_bad_settings_are_named(tmp_path, change, match):
    env = environment(tmp_path)
    for name, value in change.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with pytest.raises(config.SettingsError, match=match):
        config.from_environment(env)


def test_secret_values_never_in_errors(tmp_path):
    env = environment(tmp_path, TZR_SITE_AES_KEY="c2VjcmV0LWtleS12YWx1ZQ==")
    with pytest.raises(config.SettingsError) as caught:
        config.from_environment(env)
    assert "c2VjcmV0" not in str(caught.value)


# THE TOKEN FILE


def token(lifetime: float, **claims) -> str:
    return jwt.encode({"sub": "agent", "exp": int(time.time() + lifetime), **claims}, "x" * 32, algorithm="HS256")


def test_token_read_and_changes_noticed(tmp_path):
    path = tmp_path / "token"
    path.write_text(token(60) + "\n")
    tokens = TokenFile(path)
    first = tokens.check_usable()
    assert not tokens.changed()
    path.write_text(token(120))
    assert tokens.changed()
    assert tokens.current().expires_at > first.expires_at


@pytest.mark.parametrize("content, match", [
    (None, "cannot read the token file"),
    ("", "is empty"),
    ("not-a-jwt", "not a JWT"),
])
def test_unusable_token_files(tmp_path, content, match):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenError, match=match):
        TokenFile(path).check_usable()


def test_expired_token_refused_with_advice(tmp_path):
    path = tmp_path / "token"
    path.write_text(token(-5))
    with pytest.raises(TokenError, match="expired at .* put a new token"):
        TokenFile(path).check_usable()


def test_token_value_stays_out_of_repr():
    value = token(60)
    assert value not in repr(parse_token(value))


def test_token_with_a_bad_exp():
    with pytest.raises(TokenError, match="exp claim is not a number"):
        parse_token(jwt.encode({"exp": "tomorrow"}, "x" * 32, algorithm="HS256"))


# JOB CHECKS


def test_good_job_passes():
    job = protocol.check_job(build_job("get_server_status", {}, KEY), KEY, ttl=45)
    assert job.job_type == "get_server_status"


def test_signature_checked_before_age():
    job = build_job("get_server_status", {}, b"other", now=time.time() - 3600)
    with pytest.raises(protocol.JobRejected) as caught:
        protocol.check_job(job, KEY, ttl=45)
    assert caught.value.code == "invalid_signature"
    assert not caught.value.store


@pytest.mark.parametrize("offset, code", [(-45.5, "job_expired"), (46, "job_from_future")])
def test_age_limits(offset, code):
    now = time.time()
    job = build_job("get_server_status", {}, KEY, now=now + offset)
    with pytest.raises(protocol.JobRejected) as caught:
        protocol.check_job(job, KEY, ttl=45, now=now)
    assert caught.value.code == code


@pytest.mark.parametrize("offset", [-44, 0, 44])
def test_inside_the_ttl(offset):
    now = time.time()
    protocol.check_job(build_job("get_server_status", {}, KEY, now=now + offset), KEY, ttl=45, now=now)


@pytest.mark.parametrize("frame, match", [
    ("{", "not JSON"), ("[]", "not an object"), ('{"type": "result", "id": "x"}', "not 'job'"),
    ('{"type": "job"}', "without a usable id"), ('{"type": "job", "id": ""}', "without a usable id"),
    ('{"type": "job", "id": "' + "x" * 200 + '"}', "without a usable id"), (b"\xff", "not UTF-8"),
])
def test_frames_dropped(frame, match):
    with pytest.raises(protocol.FrameDropped, match=match):
        protocol.parse_frame(frame)


def test_fingerprint_follows_type_and_payload():
    first = protocol.check_job(build_job("register", {"a": 1}, KEY), KEY, 45)
    same = protocol.check_job(build_job("register", {"a": 1}, KEY), KEY, 45)
    other = protocol.check_job(build_job("register", {"a": 2}, KEY), KEY, 45)
    assert first.fingerprint() == same.fingerprint() != other.fingerprint()


# RESULTS AND ERROR TEXTS


def test_result_signed_over_its_fields():
    result = protocol.result_message("job-1", True, {"x": 1.0}, None, KEY)
    assert crypto.signature_matches(result, crypto.RESULT_SIGNED_FIELDS, KEY)
    assert result["error"] is None
    assert result["type"] == "result"


def test_failed_result_has_no_result():
    result = protocol.result_message("job-1", False, {"ignored": True}, "internal_error: x", KEY)
    assert result["result"] is None
    assert result["ok"] is False


def test_error_texts_are_russian_with_a_code():
    assert protocol.error_text("login_taken") == "login_taken: Этот логин уже занят."
    assert protocol.error_text("job_expired", {"age": 50, "ttl": 45}).startswith("job_expired: Задание устарело")
    text = protocol.error_text("validation_error", fields={"login": "login.length", "x": ["param.range", {}]})
    assert text.startswith("validation_error: ")
    assert "login: " in text


# THE BACKOFF


def test_backoff_doubles_with_jitter_and_resets():
    backoff = Backoff(1.0, 8.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 1.0
    low = Backoff(1.0, 8.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


# ISOLATION


def test_agent_imports_no_services(tmp_path):
    import subprocess

    code = ("import sys, site_agent.cli, site_agent.site, eventlet.patcher; "
            "assert 'services' not in sys.modules, 'services imported'; "
            "assert not eventlet.patcher.is_monkey_patched('socket'); "
            "assert 'psycopg' not in sys.modules and 'pymysql' not in sys.modules")
    completed = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:site_agent", "-c", code],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "Eventlet is deprecated" not in completed.stderr
