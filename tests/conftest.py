"""Shared fixtures: a throwaway PostgreSQL database with the schema applied.

eventlet is monkey-patched before anything else is imported, because the
Nameko container tests hang without it (nameko 2.14 expects `nameko test`,
which does the same). Code that needs real OS threads or processes is run
in a subprocess by the tests (the ``tzr-ingest`` CLI), never in this one.
"""

import warnings

warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402 -- must run before the imports below

import psycopg
import pytest

from pgtools import migrated_database

pytest_plugins = ["nameko.testing.pytest"]

DATA_TABLES = ("events", "battles", "map_templates", "ingest_runs", "ingest_files")


@pytest.fixture(scope="session")
def pg_dsn():
    """Create a database for this test session, migrate it, and drop it at the end."""
    with migrated_database() as dsn:
        yield dsn


@pytest.fixture
def pg(pg_dsn):
    """An autocommit connection to an emptied test database."""
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        mart_tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'mart\\_%'"
            )
        ]
        tables = ", ".join((*DATA_TABLES, *mart_tables))
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        yield connection
