"""The password transform the game server expects in ADDUSER ``p`` and NEWPAS ``pwd2``.

The scheme belongs to the game server and must stay bit-exact: the key is
spliced into the password, every space is removed, the result is hashed
with SHA-1, and the 40 uppercase hex digits are permuted. It is an unsalted
hash with a constant key, so the output is as sensitive as the password:
never log it or store it.
"""

import hashlib
import re


#: The key the game server uses unless it is configured otherwise.
DEFAULT_KEY = "0123456789ABCDEF0123456789ABCDEF"

KEY_LENGTH = 32

# Output position i takes hex digit _PERMUTATION[i] of the SHA-1 digest.
_PERMUTATION = (
    30, 26, 24, 39, 2, 15, 1, 4, 5, 18, 27, 38, 10, 19, 33, 17, 7, 36, 34, 31,
    8, 14, 23, 21, 29, 3, 32, 25, 37, 20, 28, 11, 22, 16, 35, 0, 6, 9, 13, 12,
)  # fmt: skip

_HASH_RE = re.compile(r"[0-9A-F]{40}")


def transform_password(password: str, key: str = DEFAULT_KEY) -> str:
    """Return the 40-character transform of ``password`` that the game server stores.

    Spaces are removed after the key is spliced in, so ``"my pass"`` and
    ``"mypass"`` give the same result. A leading space is different: it is
    the character placed before the key, so the key's digits come first and
    ``" mypass"`` differs from ``"mypass"``.

    Raises ValueError for an empty password, a password with non-ASCII
    characters, or a key that is not 32 ASCII characters. The message never
    contains the password.
    """
    if not isinstance(password, str) or not password:
        raise ValueError("the password must be a non-empty string")
    if not password.isascii():
        raise ValueError("the password must contain only ASCII characters")
    if not isinstance(key, str) or len(key) != KEY_LENGTH or not key.isascii():
        raise ValueError(f"the key must be {KEY_LENGTH} ASCII characters")

    salted = password[0] + key[:10] + password[1:] + key[10:]
    salted = salted.replace(" ", "")
    digest = hashlib.sha1(salted.encode("ascii")).hexdigest().upper()
    return "".join(digest[index] for index in _PERMUTATION)


def is_password_hash(value) -> bool:
    """Return whether ``value`` has the shape of a transform: 40 uppercase hex digits."""
    return isinstance(value, str) and _HASH_RE.fullmatch(value) is not None
