"""Schema of the game's MariaDB database: TZR Host's migrations and the test schema.

``tzr-gamedb migrate`` applies the migrations in ``sql/migrations`` with
yoyo. They need the game's ``tgplayers`` table, which a real game server
has, with each login linked once; both are checked first. MariaDB commits
DDL at once, so the migrations run outside transactions and every statement
is safe to run again after a failed run. ``tzr-gamedb test-schema`` creates the game's tables (constants,
tgplayers, users) for test mode and tests, and must never run against a
production database.
"""

import os
import sys
from pathlib import Path

import click
import pymysql
from yoyo import get_backend, read_migrations

from services.common.mariadb import parse_dsn
from services.common.secrets import SecretError, read_secret


DSN_ENV = "TZR_GAMEDB_DSN"
DEFAULT_DSN = "mysql://root@127.0.0.1:3306/tzserver"
PASSWORD_SECRET = "MARIADB_PASSWORD"
SQL_DIR = Path(__file__).with_name("sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
TEST_SCHEMA = SQL_DIR / "test_schema.sql"
EXIT_CANNOT_RUN = 3


def _connect_arguments(dsn: str) -> dict:
    arguments = parse_dsn(dsn)
    password = read_secret(PASSWORD_SECRET, required=False)
    if password:
        arguments["password"] = password
    return arguments


class MissingPrerequisite(ValueError):
    """The database lacks what the migrations need; the message says what to fix."""


# Duplicated logins named in the message, at most.
_DUPLICATES_SHOWN = 5


def check_prerequisites(dsn: str) -> None:
    """Raise MissingPrerequisite unless the database has tgplayers with each login linked once.

    The migrations add a unique index on ``tgplayers.login``, so duplicated
    logins would stop them halfway. Once that index exists, the check of
    duplicates is skipped.
    """
    connection = pymysql.connect(**_connect_arguments(dsn), charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT DATABASE()")
            database = cursor.fetchone()[0]
            cursor.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tgplayers'"
            )
            if cursor.fetchone() is None:
                raise MissingPrerequisite(
                    f"table tgplayers is missing in database {database}: is this the game database? "
                    "On a test machine, create the game's tables first with tzr-gamedb test-schema"
                )
            cursor.execute(
                "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = 'tgplayers' AND INDEX_NAME = 'uq_tgplayers_login'"
            )
            if cursor.fetchone() is not None:
                return
            # GROUP BY compares with the column's collation, as the unique index will.
            cursor.execute(
                "SELECT MIN(login), COUNT(*) FROM tgplayers GROUP BY login HAVING COUNT(*) > 1"
                " ORDER BY MIN(login)"
            )
            duplicates = cursor.fetchall()
    finally:
        connection.close()
    if duplicates:
        shown = ", ".join(f"{login!r} ({count} rows)" for login, count in duplicates[:_DUPLICATES_SHOWN])
        more = f" and {len(duplicates) - _DUPLICATES_SHOWN} more" if len(duplicates) > _DUPLICATES_SHOWN else ""
        raise MissingPrerequisite(
            f"tgplayers links {len(duplicates)} login(s) more than once: {shown}{more}. "
            "The migrations make tgplayers.login unique: keep one row per login, then run migrate again"
        )


def migrate(dsn: str) -> list[str]:
    """Check the prerequisites, then apply pending migrations under yoyo's lock; return their ids.

    Raises MissingPrerequisite before anything changes when the database is
    not ready for them.
    """
    check_prerequisites(dsn)
    arguments = _connect_arguments(dsn)
    password = arguments.get("password")
    auth = arguments["user"] + (f":{password}" if password else "")
    backend = get_backend(f"mysql://{auth}@{arguments['host']}:{arguments['port']}/{arguments['database']}")
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]


def create_database(dsn: str) -> None:
    """Create the DSN's database if it does not exist (utf8mb4, unicode_ci)."""
    arguments = _connect_arguments(dsn)
    database = arguments.pop("database")
    connection = pymysql.connect(**arguments, charset="utf8mb4")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        connection.close()


def apply_test_schema(dsn: str) -> None:
    """Create the game's tables in the DSN's database (test mode only)."""
    # The file has no semicolons inside strings, so dropping comment lines
    # and splitting on ";" gives its statements.
    lines = [line for line in TEST_SCHEMA.read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("--")]
    statements = [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
    connection = pymysql.connect(**_connect_arguments(dsn), charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


_dsn_option = click.option(
    "--dsn", envvar=DSN_ENV, default=DEFAULT_DSN, show_default=True,
    help=f"MariaDB URI without a password (environment: {DSN_ENV}); the password comes from the "
         f"{PASSWORD_SECRET} or {PASSWORD_SECRET}_FILE environment variable.",
)


@click.group()
def main() -> None:
    """Manage TZR Host's tables in the game's MariaDB database."""


@main.command("migrate")
@_dsn_option
def migrate_command(dsn: str) -> None:
    """Apply pending migrations."""
    try:
        applied = migrate(dsn)
    except (pymysql.MySQLError, ValueError, SecretError) as error:
        click.echo(f"error: cannot migrate {dsn}: {error}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date")


@main.command("test-schema")
@_dsn_option
@click.option("--yes-this-is-a-test-database", "confirmed", is_flag=True,
              help="Confirm that the database is not a game server's.")
def test_schema_command(dsn: str, confirmed: bool) -> None:
    """Create the database and the game's tables for test mode."""
    if not confirmed and os.environ.get("TZR_MODE") != "test":
        click.echo("error: refusing to create test tables: pass --yes-this-is-a-test-database "
                   "or set TZR_MODE=test", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    try:
        create_database(dsn)
        apply_test_schema(dsn)
    except (pymysql.MySQLError, ValueError, SecretError) as error:
        click.echo(f"error: cannot create the test schema in {dsn}: {error}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"test schema ready in {dsn}")


if __name__ == "__main__":
    main()
