"""Signing and encryption of the messages that the website and the agent exchange.

The website already speaks this format, so it is kept byte for byte:

- a message is signed with HMAC-SHA256 over its canonical JSON, which is
  the object reduced to the signed fields, with keys sorted at every level,
  no whitespace, non-ASCII characters written as themselves, and numbers as
  Python's :mod:`json` writes them (``1.0`` keeps its decimal point);
- the HMAC key is the UTF-8 bytes of the shared secret as written, never
  decoded from hex or base64; the signature is the lowercase hex digest;
- ``password_encrypted`` is standard base64 of nonce (12 bytes), GCM tag
  (16 bytes) and ciphertext, in that order, with AES-256-GCM and no
  associated data.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


#: The fields of a job that its signature covers, and those of a result.
JOB_SIGNED_FIELDS = ("type", "id", "job_type", "payload", "ts", "nonce")
RESULT_SIGNED_FIELDS = ("type", "id", "ok", "result", "error", "ts", "nonce")

AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16


class DecryptionFailed(ValueError):
    """A ciphertext is not base64, is too short, or fails authentication under the key."""


def canonical_json(value) -> bytes:
    """Return the canonical UTF-8 JSON of ``value``: sorted keys, no spaces, raw non-ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signed_part(message: dict, fields) -> dict:
    """Return the fields of ``message`` that its signature covers; a missing field counts as null."""
    return {name: message.get(name) for name in fields}


def sign(message: dict, fields, key: bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of the canonical JSON of ``fields`` of ``message``."""
    return hmac.new(key, canonical_json(signed_part(message, fields)), hashlib.sha256).hexdigest()


def signature_matches(message: dict, fields, key: bytes) -> bool:
    """Tell whether ``message["sig"]`` is the signature of ``message``, comparing in constant time."""
    presented = message.get("sig")
    if not isinstance(presented, str):
        return False
    expected = sign(message, fields, key)
    return hmac.compare_digest(expected.encode("ascii"), presented.encode("utf-8", "replace"))


def hmac_key(secret: str) -> bytes:
    """Return the HMAC key for the shared secret: its UTF-8 bytes, as the website uses them."""
    if not secret:
        raise ValueError("the HMAC secret is empty")
    return secret.encode("utf-8")


def aes_key(encoded: str) -> bytes:
    """Decode the base64 AES key; raise ValueError unless it is exactly 32 bytes."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the AES key is not valid base64") from None
    if len(key) != AES_KEY_BYTES:
        raise ValueError(f"the AES key must decode to {AES_KEY_BYTES} bytes, got {len(key)}")
    return key


def encrypt(plaintext: str, key: bytes, nonce: bytes | None = None) -> str:
    """Encrypt ``plaintext`` as the website does: base64 of nonce, tag and ciphertext."""
    nonce = os.urandom(GCM_NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != GCM_NONCE_BYTES:
        raise ValueError(f"the GCM nonce must be {GCM_NONCE_BYTES} bytes, got {len(nonce)}")
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), None)
    ciphertext, tag = sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]
    return base64.b64encode(nonce + tag + ciphertext).decode("ascii")


def decrypt(value: str, key: bytes) -> str:
    """Decrypt a ``password_encrypted`` value; raise :class:`DecryptionFailed` for any bad input.

    The error never quotes the value or the plaintext.
    """
    if not isinstance(value, str):
        raise DecryptionFailed("the encrypted value is not a string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("the encrypted value is not valid base64") from None
    if len(raw) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise DecryptionFailed(f"the encrypted value is {len(raw)} bytes, shorter than a nonce and a tag")
    nonce = raw[:GCM_NONCE_BYTES]
    tag = raw[GCM_NONCE_BYTES:GCM_NONCE_BYTES + GCM_TAG_BYTES]
    ciphertext = raw[GCM_NONCE_BYTES + GCM_TAG_BYTES:]
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext + tag, None)
    except InvalidTag:
        raise DecryptionFailed("the encrypted value fails authentication: wrong key or altered data") from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed("the decrypted value is not UTF-8") from None
