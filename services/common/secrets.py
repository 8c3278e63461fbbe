"""Secrets from the environment or from files, never from config or defaults.

A secret ``NAME`` comes from the environment variable ``NAME``, or else from
the file named by ``NAME_FILE`` (the convention of Docker and systemd
credentials, which keeps the value out of the process environment). Config
sections name the secret, for example ``password_secret: MARIADB_PASSWORD``,
and never contain its value.
"""

import os
from logging import getLogger

from nameko.exceptions import ConfigurationError


_log = getLogger(__name__)

FILE_SUFFIX = "_FILE"


class SecretError(ConfigurationError):
    """A required secret is not set, or its file cannot be read."""


def read_secret(name: str, required: bool = True) -> str | None:
    """Return the secret ``name`` from the environment or from ``name_FILE``.

    The variable ``name`` wins when both are set, and a warning names the
    ignored ``name_FILE``. Trailing line breaks of a file are stripped. An
    empty value counts as not set, because it is almost always an unset
    deployment variable rather than a real secret. The value is never
    logged.

    Raises :class:`SecretError` when ``name_FILE`` points at a missing,
    unreadable or empty file. When neither variable is set, raises
    SecretError if ``required`` is true and returns None otherwise.
    """
    if not name:
        raise SecretError("a secret name is required, got an empty string")
    file_variable = name + FILE_SUFFIX
    value = os.environ.get(name)
    path = os.environ.get(file_variable)

    if value:
        if path:
            _log.warning("both %s and %s are set; using %s and ignoring the file", name, file_variable, name)
        return value

    if path:
        return _read_secret_file(file_variable, path)

    if required:
        raise SecretError(
            f"secret {name} is not set: set the environment variable {name}, "
            f"or {file_variable} to the path of a file that contains it"
        )
    return None


def _read_secret_file(file_variable: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as stream:
            value = stream.read().rstrip("\r\n")
    except OSError as error:
        raise SecretError(f"cannot read the secret file {path} named by {file_variable}: {error}") from error
    except UnicodeDecodeError:
        # The decoder's message quotes the offending byte, which is part of the secret.
        raise SecretError(f"the secret file {path} named by {file_variable} is not valid UTF-8") from None
    if not value:
        raise SecretError(f"the secret file {path} named by {file_variable} is empty")
    _log.debug("secret read from the file named by %s", file_variable)
    return value
