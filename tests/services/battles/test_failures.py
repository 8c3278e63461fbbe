"""The battles service when its database is down or a query runs too long."""

import time

import pytest
from nameko.standalone.rpc import ServiceRpcProxy
from psycopg_pool import ConnectionPool

from services.battles.service import BattlesService, run_query
from services.common.errors import ServiceUnavailable, ValidationFailed


pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_database_down_gives_service_unavailable_in_bounded_time(container_factory, rabbit_config):
    config = {**rabbit_config, "BATTLES": {"dsn": "postgresql://tzr@127.0.0.1:1/tzr", "pool_timeout": 1}}
    container = container_factory(BattlesService, config)
    container.start()
    with ServiceRpcProxy("battles", config, timeout=30) as battles:
        assert battles.ready() == {"postgres": False}
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            battles.search_battles({})
        assert time.monotonic() - started < 5
        # Bad parameters are still reported as such, before any query.
        with pytest.raises(ValidationFailed):
            battles.top_players({"metric": "wins"})


def test_statement_timeout_gives_service_unavailable(pg_dsn):
    pool = ConnectionPool(pg_dsn, min_size=1, max_size=1, open=True, kwargs={"options": "-c statement_timeout=100"})
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="took too long"):
            run_query(pool, lambda connection: connection.execute("SELECT pg_sleep(2)"))
        assert time.monotonic() - started < 1.5
        assert run_query(pool, lambda connection: connection.execute("SELECT 1").fetchone()) == (1,)
    finally:
        pool.close()


def test_bad_timezone_in_config_stops_the_service(container_factory, rabbit_config, pg_dsn):
    config = {**rabbit_config, "BATTLES": {"dsn": pg_dsn, "timezone": "Mars/Base"}}
    with pytest.raises(ValueError, match="timezone"):
        container_factory(BattlesService, config).start()


def test_bad_statement_timeout_in_config_stops_the_service(container_factory, rabbit_config, pg_dsn):
    config = {**rabbit_config, "BATTLES": {"dsn": pg_dsn, "statement_timeout": "fast"}}
    with pytest.raises(ValueError, match="statement_timeout"):
        container_factory(BattlesService, config).start()
