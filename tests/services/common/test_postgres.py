"""The PostgreSQL provider against the real server: transactions, shutdown, eventlet."""

import time
from unittest.mock import Mock

import psycopg
import pytest
from nameko.containers import ServiceContainer
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from psycopg_pool import PoolTimeout

from waiting import wait_for
from services.common.postgres import Postgres


pytestmark = pytest.mark.postgres

SECTION = "ANALYTICS"
CONCURRENT_WORKERS = 8
SLEEP_SECONDS = 0.5


def bind_provider(section_config: dict) -> Postgres:
    container = Mock(spec=ServiceContainer, config={SECTION: section_config}, service_name="probe")
    provider = Postgres(SECTION).bind(container, "db")
    # bind() keeps only a weak reference to the container.
    provider.mock_container = container
    return provider


@pytest.fixture
def provider(pg_dsn):
    provider = bind_provider({"dsn": pg_dsn, "pool_min": 1, "pool_max": 3, "pool_timeout": 2})
    provider.setup()
    provider.start()
    yield provider
    provider.kill()


@pytest.fixture
def scratch(pg):
    pg.execute("CREATE TABLE IF NOT EXISTS provider_scratch (id int PRIMARY KEY)")
    pg.execute("TRUNCATE provider_scratch")
    yield pg
    pg.execute("DROP TABLE provider_scratch")


def backend_count(pg, application_name: str) -> int:
    return pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
    ).fetchone()[0]


def test_pure_python_driver():
    # The C implementation blocks the eventlet hub during queries.
    assert psycopg.pq.__impl__ == "python"


def test_commit_on_success(provider, scratch):
    with provider.pool.connection() as connection:
        connection.execute("INSERT INTO provider_scratch VALUES (1)")

    assert scratch.execute("SELECT count(*) FROM provider_scratch").fetchone()[0] == 1


def test_rollback_on_error(provider, scratch):
    with pytest.raises(ZeroDivisionError):
        with provider.pool.connection() as connection:
            connection.execute("INSERT INTO provider_scratch VALUES (1)")
            1 / 0

    assert scratch.execute("SELECT count(*) FROM provider_scratch").fetchone()[0] == 0


def test_pool_timeout(pg_dsn):
    provider = bind_provider({"dsn": pg_dsn, "pool_min": 1, "pool_max": 1, "pool_timeout": 0.3})
    provider.setup()
    provider.start()

    with provider.pool.connection():
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            with provider.pool.connection():
                pass
        waited = time.monotonic() - started
    provider.stop()

    assert waited >= 0.3
    assert waited < 0.9


def test_stop_closes_every_connection(pg_dsn, pg):
    application_name = "tzr_test_postgres_provider"
    provider = bind_provider({
        "dsn": f"{pg_dsn}?application_name={application_name}",
        "pool_min": 3,
        "pool_max": 3,
    })
    provider.setup()
    provider.start()
    provider.pool.wait(timeout=5)
    assert backend_count(pg, application_name) == 3

    provider.stop()

    assert wait_for(lambda: backend_count(pg, application_name) == 0)


def test_kill_after_stop(provider):
    provider.stop()

    provider.kill()

    assert provider.pool is None


class PostgresProbe:
    name = "postgres_probe"

    db = Postgres(SECTION)

    @rpc
    def sleep(self, seconds):
        with self.db.connection() as connection:
            connection.execute("SELECT pg_sleep(%s)", (seconds,))
        return seconds


@pytest.mark.integration
def test_concurrent_workers_overlap(container_factory, rabbit_config, pg_dsn):
    config = {
        **rabbit_config,
        "max_workers": CONCURRENT_WORKERS + 2,
        SECTION: {"dsn": pg_dsn, "pool_min": CONCURRENT_WORKERS, "pool_max": CONCURRENT_WORKERS},
    }
    container = container_factory(PostgresProbe, config)
    container.start()
    # Let the pool open its connections first, so the timing covers only the queries.
    provider = next(iter(container.dependencies))
    provider.pool.wait(timeout=10)

    with ServiceRpcProxy("postgres_probe", config, timeout=30) as probe:
        started = time.monotonic()
        replies = [probe.sleep.call_async(SLEEP_SECONDS) for _ in range(CONCURRENT_WORKERS)]
        results = [reply.result() for reply in replies]
        elapsed = time.monotonic() - started

    serial_seconds = CONCURRENT_WORKERS * SLEEP_SECONDS
    assert results == [SLEEP_SECONDS] * CONCURRENT_WORKERS
    assert elapsed >= SLEEP_SECONDS
    assert elapsed < serial_seconds * 0.5, f"{CONCURRENT_WORKERS} queries took {elapsed:.2f} s"
