"""The wire format's signatures and encryption, against the vectors the website was checked with."""

import base64

import pytest

from site_agent import crypto


SECRET = "example-shared-secret"
AES_KEY_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
STATUS_JOB = {
    "type": "job", "id": "7d1c0a52-0000-4000-8000-000000000001", "job_type": "get_server_status",
    "payload": {}, "ts": 1760000000, "nonce": "5b2e9f10-0000-4000-8000-000000000002",
}
STATUS_RESULT = {
    "type": "result", "id": "7d1c0a52-0000-4000-8000-000000000001", "ok": True,
    "result": {"server_status": 1, "rates": {"exp": 2.0, "pvp": 1.0, "pve": 1.0, "color_mob": 1.0, "skill": 1.0},
               "generated_at": "2025-10-09T08:53:21.123456+00:00", "revision": 1760000001},
    "error": None, "ts": 1760000001, "nonce": "c0ffee00-0000-4000-8000-000000000003",
}
REGISTER_JOB = {
    "type": "job", "id": "a1b2c3d4-0000-4000-8000-00000000000a", "job_type": "register",
    "payload": {"login": "Странник", "password_encrypted": "AAECAwQFBgcICQoL9f9PixIxYw+NSHLph1okBjQxtWmgkZJ6/jI=",
                "gender": 1, "telegram_id": 123456789, "username": "wanderer"},
    "ts": 1760000100, "nonce": "e5f6a7b8-0000-4000-8000-00000000000b",
}


# SIGNATURES


def test_canonical_form_of_the_status_job():
    assert crypto.canonical_json(STATUS_JOB) == (
        b'{"id":"7d1c0a52-0000-4000-8000-000000000001","job_type":"get_server_status",'
        b'"nonce":"5b2e9f10-0000-4000-8000-000000000002","payload":{},"ts":1760000000,"type":"job"}'
    )


@pytest.mark.parametrize("message, fields, expected", [
    (STATUS_JOB, crypto.JOB_SIGNED_FIELDS, "3cbe9bbcd2516ed931b7f2f8508fb62e95a723ce5dfac0e30f7f71bcf26b13fd"),
    (STATUS_RESULT, crypto.RESULT_SIGNED_FIELDS, "bcfbf5d6f86aec592e85b09ca83d1b51b70b02d88b165512e3cc5e348dba2ad0"),
    (REGISTER_JOB, crypto.JOB_SIGNED_FIELDS, "d5c1d72eb33b098b6d05978ceafb701cd74a684171b8a4e8eda8e97b427cafbf"),
])
def test_signature_vectors(message, fields, expected):
    key = crypto.hmac_key(SECRET)
    assert crypto.sign(message, fields, key) == expected
    assert crypto.signature_matches({**message, "sig": expected}, fields, key)


def test_non_ascii_is_signed_raw():
    assert "Странник".encode() in crypto.canonical_json(REGISTER_JOB)


def test_fields_outside_the_list_are_not_signed():
    key = crypto.hmac_key(SECRET)
    signed = {**STATUS_JOB, "sig": crypto.sign(STATUS_JOB, crypto.JOB_SIGNED_FIELDS, key)}
    assert crypto.signature_matches({**signed, "extra": "ignored"}, crypto.JOB_SIGNED_FIELDS, key)


@pytest.mark.parametrize("change", [
    {"payload": {"x": 1}}, {"ts": 1760000001}, {"nonce": "other"}, {"job_type": "register"}, {"id": "x"},
])
def test_any_signed_field_changed_fails(change):
    key = crypto.hmac_key(SECRET)
    signed = {**STATUS_JOB, "sig": crypto.sign(STATUS_JOB, crypto.JOB_SIGNED_FIELDS, key)}
    assert not crypto.signature_matches({**signed, **change}, crypto.JOB_SIGNED_FIELDS, key)


@pytest.mark.parametrize("sig", [None, 7, "", "3CBE9BBCD2516ED931B7F2F8508FB62E95A723CE5DFAC0E30F7F71BCF26B13FD",
                                 "3cbe9bbcd2516ed931b7f2f8508fb62e95a723ce5dfac0e30f7f71bcf26b13fe", "ä" * 64])
def test_bad_signatures_fail(sig):
    assert not crypto.signature_matches({**STATUS_JOB, "sig": sig}, crypto.JOB_SIGNED_FIELDS,
                                        crypto.hmac_key(SECRET))


def test_hex_looking_secret_is_used_as_text():
    secret = "00" * 32
    assert crypto.hmac_key(secret) == secret.encode()


def test_empty_secret_refused():
    with pytest.raises(ValueError, match="empty"):
        crypto.hmac_key("")


# AES-GCM


def test_encryption_vector():
    key = crypto.aes_key(AES_KEY_B64)
    assert key == bytes(range(32))
    assert crypto.encrypt("s3cretPass", key, bytes(range(12))) == "AAECAwQFBgcICQoL9f9PixIxYw+NSHLph1okBjQxtWmgkZJ6/jI="
    assert crypto.decrypt("AAECAwQFBgcICQoL9f9PixIxYw+NSHLph1okBjQxtWmgkZJ6/jI=", key) == "s3cretPass"


def test_layout_is_nonce_tag_ciphertext():
    raw = base64.b64decode(crypto.encrypt("abc", bytes(32), bytes(12)))
    assert len(raw) == 12 + 16 + 3
    assert raw[:12] == bytes(12)


def test_round_trip_with_random_nonces():
    key = bytes(range(32))
    first, second = crypto.encrypt("пароль", key), crypto.encrypt("пароль", key)
    assert first != second
    assert crypto.decrypt(first, key) == crypto.decrypt(second, key) == "пароль"


@pytest.mark.parametrize("value, match", [
    ("AAECAwQFBgcICQoL9f9PixIxYw+NSHLph1okBjQxtWmgkZJ6/jI=", "wrong key or altered"),
    ("not base64!", "not valid base64"),
    ("AAEC", "shorter than a nonce and a tag"),
    (None, "not a string"),
])
def test_decryption_failures(value, match):
    with pytest.raises(crypto.DecryptionFailed, match=match):
        crypto.decrypt(value, bytes(32))


def test_altered_ciphertext_fails():
    key = bytes(range(32))
    raw = bytearray(base64.b64decode(crypto.encrypt("s3cretPass", key)))
    raw[-1] ^= 1
    with pytest.raises(crypto.DecryptionFailed, match="altered"):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode(), key)


@pytest.mark.parametrize("value, match", [("AAAA", "32 bytes, got 3"), ("***", "not valid base64")])
def test_bad_aes_keys(value, match):
    with pytest.raises(ValueError, match=match):
        crypto.aes_key(value)
