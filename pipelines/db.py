"""PostgreSQL connections and schema migrations for the analytics database."""

import os
import re
from logging import getLogger
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations


_log = getLogger(__name__)

DSN_ENV = "TZR_PG_DSN"
DEFAULT_DSN = "postgresql://tzr@127.0.0.1:5432/tzr"
MIGRATIONS_DIR = Path(__file__).with_name("sql") / "migrations"
#: Seconds to wait for a connection before giving up.
CONNECT_TIMEOUT = 10

_PASSWORD_RE = re.compile(r"^(\w+(?:\+\w+)?://[^:/@]*:)[^@]*@")


class SchemaOutdated(RuntimeError):
    """The database lacks migrations that this code needs."""


def resolve_dsn(dsn: str | None = None) -> str:
    return dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN


def redacted(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***``, for messages and logs."""
    return _PASSWORD_RE.sub(r"\1***@", dsn)


def connect(dsn: str | None = None, **kwargs) -> psycopg.Connection:
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return psycopg.connect(resolve_dsn(dsn), **kwargs)


def _yoyo_uri(dsn: str) -> str:
    scheme, separator, rest = dsn.partition("://")
    if not separator or scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"expected a postgresql:// connection URI for migrations, got {scheme!r}; "
            "key=value connection strings are not supported here"
        )
    return "postgresql+psycopg://" + rest


def _backend_and_migrations(dsn: str):
    backend = get_backend(_yoyo_uri(resolve_dsn(dsn)))
    return backend, read_migrations(str(MIGRATIONS_DIR))


def pending_migrations(dsn: str | None = None) -> list[str]:
    """Return the ids of migrations not yet applied, in order."""
    backend, migrations = _backend_and_migrations(dsn)
    return [m.id for m in backend.to_apply(migrations)]


def migrate(dsn: str | None = None) -> list[str]:
    """Apply every pending migration under yoyo's lock; return their ids."""
    backend, migrations = _backend_and_migrations(dsn)
    with backend.lock():
        pending = backend.to_apply(migrations)
        ids = [m.id for m in pending]
        if ids:
            _log.info("applying migrations %s", ", ".join(ids))
            backend.apply_migrations(pending)
    return ids


def require_current_schema(dsn: str | None = None) -> None:
    """Raise :class:`SchemaOutdated` when migrations are pending."""
    pending = pending_migrations(dsn)
    if pending:
        raise SchemaOutdated(
            f"the database schema lacks migrations {', '.join(pending)}; "
            "run `tzr-ingest migrate` first"
        )
