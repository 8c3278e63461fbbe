"""read_secret: environment variables, *_FILE files, and the errors for both."""

import logging
import os

import pytest
from nameko.exceptions import ConfigurationError

from services.common import secrets as secrets_module
from services.common.secrets import SecretError, read_secret


NAME = "TZR_TEST_SECRET"
VALUE = "s3cret-värde"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.delenv(f"{NAME}_FILE", raising=False)


def test_secret_from_environment(monkeypatch):
    monkeypatch.setenv(NAME, VALUE)

    assert read_secret(NAME) == VALUE


def test_secret_from_file_strips_newline(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text(VALUE + "\n", encoding="utf-8")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    assert read_secret(NAME) == VALUE


def test_secret_file_keeps_inner_whitespace(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text(" two words \r\n", encoding="utf-8")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    assert read_secret(NAME) == " two words "


def test_environment_wins_over_file(monkeypatch, tmp_path, caplog):
    path = tmp_path / "secret"
    path.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv(NAME, VALUE)
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with caplog.at_level(logging.DEBUG, logger="services.common.secrets"):
        value = read_secret(NAME)

    assert value == VALUE
    assert f"{NAME}_FILE" in caplog.text
    assert VALUE not in caplog.text
    assert "from-file" not in caplog.text


def test_empty_variable_falls_back_to_file(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv(NAME, "")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    assert read_secret(NAME) == "from-file"


def test_missing_secret_names_both_variables():
    with pytest.raises(SecretError) as caught:
        read_secret(NAME)

    message = str(caught.value)
    assert f"{NAME} " in message
    assert f"{NAME}_FILE" in message


def test_missing_secret_is_configuration_error():
    with pytest.raises(ConfigurationError):
        read_secret(NAME)


def test_missing_optional_secret_is_none():
    assert read_secret(NAME, required=False) is None


def test_missing_file_names_variable_and_path(monkeypatch, tmp_path):
    path = tmp_path / "absent"
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with pytest.raises(SecretError) as caught:
        read_secret(NAME, required=False)

    message = str(caught.value)
    assert f"{NAME}_FILE" in message
    assert str(path) in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_names_variable_and_path(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text(VALUE, encoding="utf-8")
    path.chmod(0)
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with pytest.raises(SecretError) as caught:
        read_secret(NAME)

    message = str(caught.value)
    assert f"{NAME}_FILE" in message
    assert str(path) in message
    assert "Permission denied" in message


def test_permission_error_names_path(monkeypatch, tmp_path):
    # Root reads any file whatever its mode, so the error is simulated here.
    path = tmp_path / "secret"

    def deny(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(secrets_module, "open", deny, raising=False)
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with pytest.raises(SecretError) as caught:
        read_secret(NAME)

    message = str(caught.value)
    assert f"{NAME}_FILE" in message
    assert str(path) in message
    assert "Permission denied" in message


def test_directory_instead_of_file(monkeypatch, tmp_path):
    monkeypatch.setenv(f"{NAME}_FILE", str(tmp_path))

    with pytest.raises(SecretError) as caught:
        read_secret(NAME)

    assert str(tmp_path) in str(caught.value)


def test_empty_file_rejected(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text("\n", encoding="utf-8")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with pytest.raises(SecretError, match="is empty"):
        read_secret(NAME)


def test_non_utf8_file_hides_bytes(monkeypatch, tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"\xff\xfe-secret")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with pytest.raises(SecretError) as caught:
        read_secret(NAME)

    message = str(caught.value)
    assert "not valid UTF-8" in message
    assert "0xff" not in message


def test_value_never_logged(monkeypatch, tmp_path, caplog):
    path = tmp_path / "secret"
    path.write_text(VALUE, encoding="utf-8")
    monkeypatch.setenv(f"{NAME}_FILE", str(path))

    with caplog.at_level(logging.DEBUG, logger="services.common.secrets"):
        read_secret(NAME)

    assert VALUE not in caplog.text
