"""Builders for the messages a client sends to the game server.

Every message is one self-closing XML element, and attribute values are
XML-escaped. A value containing a control character (below U+0020, or
U+007F) raises ValueError, which names the attribute but never shows the
value. So no value can end its attribute, add an element or inject the NUL
that ends a frame.

NOTE: how the game server's own parser treats character entities is not
known. Logins that pass registration (letters, digits, ``_``, ``-`` and
spaces) never need escaping, so this matters only for hostile input.
"""

import re
from dataclasses import dataclass

from services.game.password import is_password_hash


#: The e-mail the registration sends with every ADDUSER. The game requires
#: the attribute, and players never give an address.
DEFAULT_EMAIL = "test@test.ru"

_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})

# Shop category codes and page numbers are short; the bound keeps a typo from
# sending a huge request.
_MAX_SHOP_FIELD = 200


@dataclass(frozen=True)
class ClientIdentity:
    """Constant LOGIN attributes that the official client sends.

    The values are copied from the real client. ``version`` (``v``) looks
    like the protocol or client version, ``build`` (``v2``) like a build
    number, and ``address`` (``v3``) is a fixed address string. The server
    has never been seen to check them.
    """

    version: str = "108"
    build: str = "4875537"
    address: str = "10.20.30.40"
    lang: str = "ru"


def escape_attribute(name: str, value) -> str:
    """Return ``value`` as text escaped for a double-quoted XML attribute.

    Raises ValueError naming ``name`` if the text contains a control character.
    """
    text = str(value)
    match = _CONTROL_RE.search(text)
    if match:
        raise ValueError(
            f"attribute {name!r} contains the control character U+{ord(match.group()):04X},"
            " which the game protocol cannot carry"
        )
    return text.translate(_ESCAPES)


def build_element(tag: str, attributes: dict | None = None) -> str:
    """Return ``<TAG name="value" .../>`` with the attributes in the given order."""
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid element name {tag!r}")
    parts = [tag]
    for name, value in (attributes or {}).items():
        if not _TAG_RE.fullmatch(name):
            raise ValueError(f"invalid attribute name {name!r}")
        parts.append(f'{name}="{escape_attribute(name, value)}"')
    return "<" + " ".join(parts) + "/>"


def adduser(login: str, password_hash: str, gender: int, email: str = DEFAULT_EMAIL) -> str:
    """Build ADDUSER, which creates a game account.

    ``password_hash`` is the 40-hex output of
    :func:`services.game.password.transform_password`, and ``gender`` is
    0 (female) or 1 (male).
    """
    _check_login(login)
    _check_password_hash("p", password_hash)
    if isinstance(gender, bool) or gender not in (0, 1):
        raise ValueError(f"gender must be 0 (female) or 1 (male), got {gender!r}")
    return build_element("ADDUSER", {"l": login, "p": password_hash, "g": gender, "m": email})


def newpas(login: str, password_hash: str) -> str:
    """Build NEWPAS, which sets a new password for an existing account."""
    _check_login(login)
    _check_password_hash("pwd2", password_hash)
    return build_element("NEWPAS", {"l": login, "pwd2": password_hash})


def login(login: str, key: str, identity: ClientIdentity = ClientIdentity()) -> str:
    """Build LOGIN for a player session; ``key`` is the account's 40-hex login key."""
    _check_login(login)
    _check_password_hash("p", key)
    return build_element(
        "LOGIN",
        {
            "v3": identity.address,
            "lang": identity.lang,
            "v2": identity.build,
            "v": identity.version,
            "p": key,
            "l": login,
        },
    )


def getme() -> str:
    """Build GETME, which requests the character's parameters (a MYPARAM reply)."""
    return build_element("GETME")


def keepalive() -> str:
    """Build N, the keep-alive message. The server sends no reply."""
    return build_element("N")


def chat(text: str) -> str:
    """Build POST, a chat line; chat commands start with ``//``."""
    return build_element("POST", {"t": text})


def blook(battle_id: int) -> str:
    """Build the ``//blook <battle_id>`` chat command, which selects a battle log for GETMYBATTLE."""
    if isinstance(battle_id, bool) or not isinstance(battle_id, int) or battle_id <= 0:
        raise ValueError(f"battle_id must be a positive integer, got {battle_id!r}")
    return chat(f"//blook {battle_id}")


def getmybattle() -> str:
    """Build GETMYBATTLE, which returns the selected battle log wrapped in BLOOK."""
    return build_element("GETMYBATTLE")


def shop_page(category: str, filter_text: str, page: int) -> str:
    """Build SH, a request for one page of a shop category.

    ``filter_text`` is empty for a plain listing, or
    ``name:<template>,type:<type>`` to expand one group; ``page`` counts from 0.
    """
    if not isinstance(category, str) or not category or len(category) > _MAX_SHOP_FIELD:
        raise ValueError(f"category must be a non-empty string of at most {_MAX_SHOP_FIELD} characters")
    if not isinstance(filter_text, str) or len(filter_text) > _MAX_SHOP_FIELD:
        raise ValueError(f"filter_text must be a string of at most {_MAX_SHOP_FIELD} characters")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValueError(f"page must be an integer of at least 0, got {page!r}")
    return build_element("SH", {"c": category, "s": filter_text, "p": page})


def _check_login(login: str) -> None:
    if not isinstance(login, str) or not login:
        raise ValueError("login must be a non-empty string")


def _check_password_hash(name: str, value: str) -> None:
    # The value is secret, so the message never shows it.
    if not is_password_hash(value):
        raise ValueError(f"attribute {name!r} must be 40 uppercase hexadecimal digits")
