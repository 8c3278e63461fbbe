"""The game's password transform against its known vectors."""

import hashlib

import pytest

from services.game.password import DEFAULT_KEY, is_password_hash, transform_password


@pytest.mark.parametrize(
    "password, expected",
    [
        ("mypass123", "DBCC4A2812D8B09FC377B0B421D9977EA82C1333"),
        ("pass123", "133C8CDC4AC97D40482D99BEBE7184D94AC1EEC6"),
        ("test123456", "A6EA948C4A1E24F779E91FE1475A19ED8EAFD383"),
    ],
)
def test_known_vectors(password, expected):
    assert transform_password(password) == expected


def test_intermediate_digest_of_first_vector():
    """The spliced string and its SHA-1 before the permutation, for mypass123."""
    salted = "m0123456789ypass123ABCDEF0123456789ABCDEF"
    digest = hashlib.sha1(salted.encode("ascii")).hexdigest().upper()

    assert digest == "C241811CB3BE330A8F2074ABC9BD72D7D972398C"
    assert sorted(transform_password("mypass123")) == sorted(digest)


@pytest.mark.parametrize("password", ["my pass123", "mypass123 ", "m y p a s s 1 2 3", "m  ypass123"])
def test_spaces_ignored(password):
    assert transform_password(password) == transform_password("mypass123")


def test_leading_space_changes_result():
    """The first character goes before the key, so a leading space moves the key, not the password."""
    salted = "0123456789mypass123ABCDEF0123456789ABCDEF"
    digest = hashlib.sha1(salted.encode("ascii")).hexdigest().upper()

    assert transform_password(" mypass123") != transform_password("mypass123")
    assert sorted(transform_password(" mypass123")) == sorted(digest)


def test_output_shape():
    result = transform_password("qwerty12")

    assert len(result) == 40
    assert is_password_hash(result)


def test_key_is_a_parameter():
    other_key = "FEDCBA9876543210FEDCBA9876543210"

    assert transform_password("mypass123", DEFAULT_KEY) == transform_password("mypass123")
    assert transform_password("mypass123", other_key) != transform_password("mypass123")


@pytest.mark.parametrize("password", ["пароль123", "pässword", "pass\u00a0word", "emoji🙂"])
def test_non_ascii_rejected(password):
    with pytest.raises(ValueError, match="ASCII") as caught:
        transform_password(password)
    assert password not in str(caught.value)


def test_empty_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        transform_password("")


@pytest.mark.parametrize("key", ["short", DEFAULT_KEY + "0", "Ж" * 32])
def test_bad_key_rejected(key):
    with pytest.raises(ValueError, match="32 ASCII"):
        transform_password("mypass123", key)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("DBCC4A2812D8B09FC377B0B421D9977EA82C1333", True),
        ("dbcc4a2812d8b09fc377b0b421d9977ea82c1333", False),
        ("DBCC4A2812D8B09FC377B0B421D9977EA82C133", False),
        ("GBCC4A2812D8B09FC377B0B421D9977EA82C1333", False),
        ("DBCC4A2812D8B09FC377B0B421D9977EA82C1333\n", False),
        (None, False),
    ],
)
def test_is_password_hash(value, expected):
    assert is_password_hash(value) is expected
