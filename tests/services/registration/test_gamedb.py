"""tzr-gamedb migrate against real MariaDB databases that are not ready, or were left half-migrated."""

import pytest
from click.testing import CliRunner

from services.registration import db as gamedb


def tables(mariadb) -> list[str]:
    with mariadb.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        return sorted(row[0] for row in cursor.fetchall())


def run_migrate(dsn):
    return CliRunner().invoke(gamedb.main, ["migrate", "--dsn", dsn])


TGPLAYERS = (
    "CREATE TABLE tgplayers (telegram_id BIGINT NOT NULL, username VARCHAR(64) NULL, login VARCHAR(64) NOT NULL)"
    " DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci"
)


def test_missing_tgplayers_named_and_nothing_changed(mariadb, mariadb_dsn):
    result = run_migrate(mariadb_dsn)

    assert result.exit_code == gamedb.EXIT_CANNOT_RUN
    assert "table tgplayers is missing" in result.output
    assert "is this the game database?" in result.output
    assert tables(mariadb) == []


def test_half_migrated_database_recovers(mariadb, mariadb_dsn):
    # What a run that failed on the tgplayers index used to leave behind.
    with mariadb.cursor() as cursor:
        cursor.execute(TGPLAYERS)
        cursor.execute("CREATE TABLE tzr_telegram_quota (telegram_id BIGINT UNSIGNED NOT NULL PRIMARY KEY)")

    result = run_migrate(mariadb_dsn)

    assert result.exit_code == 0, result.output
    assert "applied 1 migration(s): 0001.registrations" in result.output
    assert {"tzr_registrations", "tzr_telegram_quota"} <= set(tables(mariadb))
    assert run_migrate(mariadb_dsn).output.strip() == "schema is up to date"


def test_duplicated_links_named_before_migrating(mariadb, mariadb_dsn):
    with mariadb.cursor() as cursor:
        cursor.execute(TGPLAYERS)
        cursor.execute("INSERT INTO tgplayers (telegram_id, login) VALUES (1, 'Ёжик'), (2, 'ежик'), (3, 'Solo')")

    result = run_migrate(mariadb_dsn)

    assert result.exit_code == gamedb.EXIT_CANNOT_RUN
    assert "tgplayers links 1 login(s) more than once: 'Ёжик' (2 rows)" in result.output
    assert tables(mariadb) == ["tgplayers"]

    with mariadb.cursor() as cursor:
        cursor.execute("DELETE FROM tgplayers WHERE telegram_id = 2")
    assert run_migrate(mariadb_dsn).exit_code == 0


def test_migrated_database_skips_duplicate_check(mariadb, mariadb_dsn):
    with mariadb.cursor() as cursor:
        cursor.execute(TGPLAYERS)
    assert run_migrate(mariadb_dsn).exit_code == 0
    with pytest.raises(Exception, match="Duplicate entry"):
        with mariadb.cursor() as cursor:
            cursor.execute("INSERT INTO tgplayers (telegram_id, login) VALUES (1, 'Twin'), (2, 'twin')")
    gamedb.check_prerequisites(mariadb_dsn)
