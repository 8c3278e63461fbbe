"""The MariaDB provider against the real server: config, pool, transactions, shutdown, eventlet."""

import logging
import socket
import time
from unittest.mock import Mock

import eventlet
import pymysql
import pytest
from nameko.containers import ServiceContainer
from nameko.exceptions import ConfigurationError
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from waiting import wait_for
from services.common.mariadb import (
    DEFAULT_POOL_SIZE,
    MariaDB,
    MariaDBPool,
    MariaDBPoolTimeout,
    MariaDBUnavailable,
    parse_dsn,
)
from services.common.secrets import SecretError


SECTION = "MARIADB"
CONCURRENT_WORKERS = 8
SLEEP_SECONDS = 0.5


def bind_provider(section_config: dict, service_name: str = "probe") -> MariaDB:
    container = Mock(spec=ServiceContainer, config={SECTION: section_config}, service_name=service_name)
    provider = MariaDB(SECTION).bind(container, "db")
    # bind() keeps only a weak reference to the container.
    provider.mock_container = container
    return provider


@pytest.fixture
def provider(mariadb_dsn):
    """A started provider with a small pool; killed at the end whatever the test did."""
    provider = bind_provider({"dsn": mariadb_dsn, "pool_size": 3, "pool_timeout": 2})
    provider.setup()
    provider.start()
    yield provider
    provider.kill()


@pytest.fixture
def notes(mariadb):
    with mariadb.cursor() as cursor:
        cursor.execute("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100)) CHARACTER SET utf8mb4")
    return mariadb


def note_bodies(admin) -> list[str]:
    with admin.cursor() as cursor:
        cursor.execute("SELECT body FROM notes ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def thread_id(pool: MariaDBPool) -> int:
    with pool.connection() as connection:
        return connection.thread_id()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestParseDsn:
    def test_full_uri(self):
        assert parse_dsn("mysql://tzuser@127.0.0.1:3307/tzserver") == {
            "host": "127.0.0.1", "port": 3307, "user": "tzuser", "database": "tzserver",
        }

    def test_defaults(self):
        assert parse_dsn("mariadb://tzuser@/tzserver") == {
            "host": "127.0.0.1", "port": 3306, "user": "tzuser", "database": "tzserver",
        }

    def test_no_database(self):
        assert parse_dsn("mysql://root@127.0.0.1")["database"] is None

    def test_password_rejected_unquoted(self):
        with pytest.raises(ValueError) as caught:
            parse_dsn("mysql://tzuser:hunter2@127.0.0.1/tzserver")

        assert "password_secret" in str(caught.value)
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize("dsn", [
        "postgresql://tzuser@127.0.0.1/tzserver",
        "mysql://127.0.0.1/tzserver",
        "mysql://tzuser@127.0.0.1/tzserver?ssl=1",
        "mysql://tzuser@127.0.0.1:port/tzserver",
    ])
    def test_invalid(self, dsn):
        with pytest.raises(ValueError):
            parse_dsn(dsn)


class TestSetup:
    def test_defaults(self):
        provider = bind_provider({"dsn": "mysql://tzuser@127.0.0.1:3306/tzserver"})

        provider.setup()

        settings = provider.settings
        assert settings.pool_size == DEFAULT_POOL_SIZE
        assert settings.connect_timeout == 5
        assert settings.read_timeout == 30
        assert settings.write_timeout == 30
        assert settings.pool_timeout == 10
        assert settings.password is None

    def test_missing_dsn(self):
        provider = bind_provider({"pool_size": 2})

        with pytest.raises(ConfigurationError, match=f"{SECTION}.dsn is missing"):
            provider.setup()

    def test_dsn_without_database(self):
        provider = bind_provider({"dsn": "mysql://tzuser@127.0.0.1:3306"})

        with pytest.raises(ConfigurationError, match="names no database"):
            provider.setup()

    def test_dsn_with_password(self):
        provider = bind_provider({"dsn": "mysql://tzuser:hunter2@127.0.0.1/tzserver"})

        with pytest.raises(ConfigurationError) as caught:
            provider.setup()

        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize("key, value", [
        ("pool_size", 0),
        ("pool_size", "many"),
        ("pool_timeout", -1),
        ("read_timeout", None),
    ])
    def test_invalid_number(self, key, value):
        provider = bind_provider({"dsn": "mysql://tzuser@127.0.0.1/tzserver", key: value})

        with pytest.raises(ConfigurationError, match=f"{SECTION}.{key}"):
            provider.setup()

    def test_password_from_secret(self, monkeypatch):
        monkeypatch.setenv("TZR_TEST_MARIADB_PASSWORD", "hunter2")
        provider = bind_provider({
            "dsn": "mysql://tzuser@127.0.0.1/tzserver",
            "password_secret": "TZR_TEST_MARIADB_PASSWORD",
        })

        provider.setup()

        assert provider.settings.password == "hunter2"
        assert "hunter2" not in repr(provider.settings)

    def test_unset_secret_means_no_password(self, monkeypatch):
        monkeypatch.delenv("TZR_TEST_MARIADB_PASSWORD", raising=False)
        monkeypatch.delenv("TZR_TEST_MARIADB_PASSWORD_FILE", raising=False)
        provider = bind_provider({
            "dsn": "mysql://tzuser@127.0.0.1/tzserver",
            "password_secret": "TZR_TEST_MARIADB_PASSWORD",
        })

        provider.setup()

        assert provider.settings.password is None

    def test_unreadable_secret_file_fails_setup(self, monkeypatch, tmp_path):
        monkeypatch.delenv("TZR_TEST_MARIADB_PASSWORD", raising=False)
        monkeypatch.setenv("TZR_TEST_MARIADB_PASSWORD_FILE", str(tmp_path / "absent"))
        provider = bind_provider({
            "dsn": "mysql://tzuser@127.0.0.1/tzserver",
            "password_secret": "TZR_TEST_MARIADB_PASSWORD",
        })

        with pytest.raises(SecretError, match="TZR_TEST_MARIADB_PASSWORD_FILE"):
            provider.setup()


class TestLifecycle:
    def test_start_opens_no_connection(self, provider, mariadb_connection_count):
        assert mariadb_connection_count() == 0

    def test_get_dependency_returns_pool(self, provider):
        pool = provider.get_dependency(Mock())

        assert isinstance(pool, MariaDBPool)
        assert pool is provider.pool

    def test_start_while_server_down(self):
        provider = bind_provider({"dsn": f"mysql://root@127.0.0.1:{unused_port()}/tzr_test_absent"})
        provider.setup()

        provider.start()

        with pytest.raises(MariaDBUnavailable, match="connection to MariaDB at root@127.0.0.1"):
            provider.pool.ping()
        provider.stop()

    def test_ping(self, provider):
        assert provider.pool.ping() is None

    def test_wrong_password_not_in_error(self, mariadb_dsn, monkeypatch, caplog):
        # The test account has no password, so any password is rejected.
        monkeypatch.setenv("TZR_TEST_MARIADB_PASSWORD", "not-the-password")
        provider = bind_provider({"dsn": mariadb_dsn, "password_secret": "TZR_TEST_MARIADB_PASSWORD"})
        provider.setup()
        provider.start()

        with caplog.at_level(logging.DEBUG, logger="services.common.mariadb"):
            with pytest.raises(MariaDBUnavailable) as caught:
                provider.pool.ping()
            provider.stop()

        assert "using password: YES" in str(caught.value)
        assert "not-the-password" not in str(caught.value)
        assert "not-the-password" not in caplog.text

    def test_stop_closes_every_connection(self, provider, mariadb_connection_count):
        pool = provider.pool
        holders = [eventlet.spawn(hold_connection, pool, 0.2) for _ in range(3)]
        for holder in holders:
            holder.wait()
        assert mariadb_connection_count() == 3

        provider.stop()

        assert wait_for(lambda: mariadb_connection_count() == 0)
        assert pool.size == 0

    def test_checkout_after_stop(self, provider):
        pool = provider.pool
        provider.stop()

        with pytest.raises(MariaDBUnavailable, match="closed"):
            with pool.connection():
                pass

    def test_kill_closes_connection_in_use(self, provider, mariadb_connection_count):
        pool = provider.pool
        # The worker's commit then fails on the closed connection.
        with pytest.raises(pymysql.err.InterfaceError):
            with pool.connection() as connection:
                connection.ping()
                assert mariadb_connection_count() == 1

                provider.kill()

                assert wait_for(lambda: mariadb_connection_count() == 0)
                assert connection.open is False

    def test_kill_after_server_dropped_connections(self, provider, mariadb, mariadb_connection_count):
        pool = provider.pool
        holders = [eventlet.spawn(hold_connection, pool, 0.1) for _ in range(2)]
        for holder in holders:
            holder.wait()
        kill_sessions(mariadb, mariadb_connection_count)

        provider.kill()

        assert pool.size == 0

    def test_kill_twice(self, provider):
        provider.kill()
        provider.kill()

        assert provider.pool is None


def hold_connection(pool: MariaDBPool, seconds: float) -> int:
    with pool.connection() as connection:
        eventlet.sleep(seconds)
        return connection.thread_id()


def kill_sessions(admin, connection_count) -> None:
    """Kill every session of the test database except the admin's own."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
        )
        for (session_id,) in cursor.fetchall():
            cursor.execute(f"KILL CONNECTION {int(session_id)}")
    assert wait_for(lambda: connection_count() == 0)


class TestTransactions:
    def test_commit_on_success(self, provider, notes):
        with provider.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO notes VALUES (1, 'kept')")

        assert note_bodies(notes) == ["kept"]

    def test_rollback_on_error(self, provider, notes):
        with pytest.raises(ZeroDivisionError):
            with provider.pool.connection() as connection:
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO notes VALUES (1, 'lost')")
                1 / 0

        assert note_bodies(notes) == []

    def test_connection_reused_after_error(self, provider, notes):
        pool = provider.pool
        with pytest.raises(pymysql.err.IntegrityError):
            with pool.connection() as connection:
                first = connection.thread_id()
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO notes VALUES (1, 'a'), (1, 'b')")

        assert thread_id(pool) == first
        assert pool.size == 1

    def test_autocommit_off(self, provider):
        with provider.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@autocommit")
                assert cursor.fetchone()[0] == 0

    def test_utf8mb4_round_trip(self, provider, notes):
        text = "Странник 🗡"
        with provider.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO notes VALUES (1, %s)", (text,))

        with provider.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT body FROM notes WHERE id = 1")
                assert cursor.fetchone()[0] == text


class TestPool:
    def test_connection_reused(self, provider, mariadb_connection_count):
        pool = provider.pool

        first = thread_id(pool)
        second = thread_id(pool)

        assert first == second
        assert mariadb_connection_count() == 1

    def test_broken_connection_discarded(self, provider, mariadb, mariadb_connection_count):
        pool = provider.pool
        thread_id(pool)
        kill_sessions(mariadb, mariadb_connection_count)

        with pytest.raises(pymysql.err.OperationalError):
            with pool.connection() as connection:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")

        assert pool.size == 0
        assert pool.ping() is None
        assert mariadb_connection_count() == 1

    def test_idle_connection_pinged_and_replaced(self, provider, mariadb, mariadb_connection_count):
        pool = provider.pool
        pool.ping_after_idle = 0
        killed = thread_id(pool)
        kill_sessions(mariadb, mariadb_connection_count)

        replacement = thread_id(pool)

        assert replacement != killed
        assert mariadb_connection_count() == 1

    def test_interrupted_query_discards_connection(self, provider, mariadb_connection_count):
        pool = provider.pool
        with pytest.raises(eventlet.Timeout):
            with eventlet.Timeout(0.2):
                with pool.connection() as connection:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT SLEEP(1)")

        assert pool.size == 0
        # The server finishes the statement, then notices the closed socket.
        assert wait_for(lambda: mariadb_connection_count() == 0)
        assert pool.ping() is None

    def test_pool_timeout(self, mariadb_dsn):
        provider = bind_provider({"dsn": mariadb_dsn, "pool_size": 1, "pool_timeout": 0.3})
        provider.setup()
        provider.start()
        holder = eventlet.spawn(hold_connection, provider.pool, 1.0)
        eventlet.sleep(0.1)

        started = time.monotonic()
        with pytest.raises(MariaDBPoolTimeout) as caught:
            with provider.pool.connection():
                pass
        waited = time.monotonic() - started
        holder.wait()
        provider.stop()

        assert waited >= 0.3
        assert waited < 0.9
        assert "pool_size 1" in str(caught.value)
        assert isinstance(caught.value, MariaDBUnavailable)

    def test_pool_size_caps_connections(self, provider, mariadb_connection_count):
        counts = []
        pool = eventlet.GreenPool()

        def run(_):
            with provider.pool.connection() as connection:
                eventlet.sleep(0.1)
                counts.append(mariadb_connection_count())
                return connection.thread_id()

        thread_ids = set(pool.imap(run, range(6)))

        assert len(thread_ids) == 3
        assert max(counts) == 3


class MariaDBProbe:
    name = "mariadb_probe"

    db = MariaDB(SECTION)

    @rpc
    def sleep(self, seconds):
        with self.db.connection() as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT SLEEP(%s)", (seconds,))
                return cursor.fetchone()[0]


@pytest.fixture
def probe_config(rabbit_config, mariadb_dsn):
    return {
        **rabbit_config,
        "max_workers": CONCURRENT_WORKERS + 2,
        SECTION: {"dsn": mariadb_dsn, "pool_size": CONCURRENT_WORKERS},
    }


@pytest.mark.integration
def test_concurrent_workers_overlap(container_factory, probe_config, mariadb_connection_count):
    container = container_factory(MariaDBProbe, probe_config)
    container.start()

    with ServiceRpcProxy("mariadb_probe", probe_config, timeout=30) as probe:
        # Open the pool's connections first, so the timing below covers only the queries.
        warm_up = [probe.sleep.call_async(1.0) for _ in range(CONCURRENT_WORKERS)]
        assert [reply.result() for reply in warm_up] == [0] * CONCURRENT_WORKERS
        assert mariadb_connection_count() == CONCURRENT_WORKERS

        started = time.monotonic()
        replies = [probe.sleep.call_async(SLEEP_SECONDS) for _ in range(CONCURRENT_WORKERS)]
        results = [reply.result() for reply in replies]
        elapsed = time.monotonic() - started

    serial_seconds = CONCURRENT_WORKERS * SLEEP_SECONDS
    assert results == [0] * CONCURRENT_WORKERS
    assert elapsed >= SLEEP_SECONDS
    assert elapsed < serial_seconds * 0.5, f"{CONCURRENT_WORKERS} queries took {elapsed:.2f} s"


@pytest.mark.integration
def test_container_kill_releases_connections(container_factory, probe_config, mariadb_connection_count):
    container = container_factory(MariaDBProbe, probe_config)
    container.start()

    with ServiceRpcProxy("mariadb_probe", probe_config, timeout=30) as probe:
        probe.sleep.call_async(1)
        assert wait_for(lambda: mariadb_connection_count() == 1)

        container.kill()

    # The server finishes the statement, then notices the closed socket; a
    # connection left open would stay in the process list.
    assert wait_for(lambda: mariadb_connection_count() == 0)


@pytest.mark.integration
def test_container_stop_releases_connections(container_factory, probe_config, mariadb_connection_count):
    container = container_factory(MariaDBProbe, probe_config)
    container.start()
    with ServiceRpcProxy("mariadb_probe", probe_config, timeout=30) as probe:
        replies = [probe.sleep.call_async(0.1) for _ in range(3)]
        for reply in replies:
            reply.result()
    assert mariadb_connection_count() == 3

    container.stop()

    assert wait_for(lambda: mariadb_connection_count() == 0)
