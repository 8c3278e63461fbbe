"""The JWT that the agent presents to the website, read from a file.

The website issues the token and checks it; the agent cannot verify its
signature and does not try. It only reads the ``exp`` claim, so that it
refuses to start with a token that has expired and does not knock on the
site's door with one. The file is read again when its modification time,
size or inode change, and whenever :meth:`TokenFile.reload` is called (on
SIGHUP).
"""

import os
import time
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import jwt


_log = getLogger(__name__)


class TokenError(Exception):
    """The token file is missing, unreadable, empty, not a JWT, or contains an expired token."""


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float | None

    def expired(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.expires_at is not None and self.expires_at <= now

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at})"


def parse_token(value: str) -> Token:
    """Return the token with its expiry; raise :class:`TokenError` when it is not a JWT."""
    try:
        claims = jwt.decode(value, options={"verify_signature": False, "verify_exp": False})
    except jwt.InvalidTokenError as error:
        raise TokenError(f"the token is not a JWT: {type(error).__name__}") from None
    expires_at = claims.get("exp")
    if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))):
        raise TokenError("the token's exp claim is not a number")
    return Token(value=value, expires_at=expires_at)


class TokenFile:
    """Reads the JWT from ``path`` and notices when the file changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp = None
        self._token: Token | None = None

    def _file_stamp(self):
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def changed(self) -> bool:
        """Tell whether the file differs from the one last read."""
        return self._file_stamp() != self._stamp

    def reload(self) -> Token:
        """Read the file; raise :class:`TokenError` when it cannot give a token. The value is never logged."""
        stamp = self._file_stamp()
        try:
            value = self.path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise TokenError(f"cannot read the token file {self.path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise TokenError(f"the token file {self.path} is not UTF-8") from None
        if not value:
            raise TokenError(f"the token file {self.path} is empty")
        token = parse_token(value)
        self._stamp = stamp
        self._token = token
        _log.debug("token read from %s, expires at %s", self.path, token.expires_at)
        return token

    def current(self) -> Token:
        """Return the token, reading the file again when it changed since the last read."""
        if self._token is None or self.changed():
            return self.reload()
        return self._token

    def check_usable(self) -> Token:
        """Return the current token; raise :class:`TokenError` when it has expired."""
        token = self.current()
        if token.expired():
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(token.expires_at))
            raise TokenError(f"the token in {self.path} expired at {when}; put a new token from the site there")
        return token
