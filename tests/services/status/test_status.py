"""The status service against real MariaDB and Redis, a probe of a real port, and cuts of the database."""

import json
import logging
import socket

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from fakes.tcp_proxy import TcpProxy
from services.common.errors import ServiceUnavailable
from services.common.mariadb import parse_dsn
from services.common.request_context import RequestIdFilter
from services.status.dependencies import StatusSettings
from services.status.service import CACHE_KEY, FRESH_KEY, StatusService


pytestmark = pytest.mark.integration


@pytest.fixture
def game_port():
    """A listening socket standing in for the game port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def mariadb_proxy(gamedb_dsn):
    address = parse_dsn(gamedb_dsn)
    with TcpProxy(address["host"], address["port"]) as proxy:
        yield proxy


@pytest.fixture
def status_config(rabbit_config, gamedb, gamedb_dsn, redis_url, game_port, mariadb_proxy):
    address = parse_dsn(gamedb_dsn)
    return {
        **rabbit_config,
        "GAMEDB": {
            "dsn": f"mysql://{address['user']}@127.0.0.1:{mariadb_proxy.port}/{address['database']}",
            "connect_timeout": 1,
            "read_timeout": 2,
        },
        "REDIS": {"url": redis_url},
        "STATUS": {"game_host": "127.0.0.1", "game_port": game_port, "ttl": 30,
                   "refresh_interval": 3600, "probe_timeout": 0.5, "query_timeout": 2},
    }


@pytest.fixture
def status(container_factory, status_config):
    container = container_factory(StatusService, status_config)
    container.start()
    with ServiceRpcProxy("status", status_config, timeout=30) as proxy:
        yield proxy


def test_status_shape(status):
    answer = status.get_status()
    assert answer["server_status"] == 1.0
    assert answer["rates"] == {"exp": 1.0, "pvp": 1.0, "pve": 1.0, "color_mob": 1.0, "skill": 1.0}
    assert answer["client_status"] == 256.0
    assert answer["online"] is True
    assert answer["stale"] is False
    assert answer["updated_at"].endswith("+00:00")
    assert "AdminNote" not in json.dumps(answer), "only whitelisted constants are published"


def test_status_cached(status, gamedb):
    first = status.get_status()
    with gamedb.cursor() as cursor:
        cursor.execute("UPDATE constants SET Value = 2 WHERE Name = 'RateExp'")
    assert status.get_status() == first, "served from the cache within the TTL"


def test_cache_expiry_refreshes(status, gamedb, redis_client):
    status.get_status()
    with gamedb.cursor() as cursor:
        cursor.execute("UPDATE constants SET Value = 3 WHERE Name = 'RateExp'")
    redis_client.delete(FRESH_KEY)
    assert status.get_status()["rates"]["exp"] == 3.0


def test_missing_constant_is_null(status, gamedb):
    with gamedb.cursor() as cursor:
        cursor.execute("DELETE FROM constants WHERE Name = 'RateSkill'")
    assert status.get_status()["rates"]["skill"] is None


def test_game_port_down(status_config, container_factory, game_port):
    config = {**status_config, "STATUS": {**status_config["STATUS"], "game_port": 1}}
    container = container_factory(StatusService, config)
    container.start()
    with ServiceRpcProxy("status", config, timeout=30) as proxy:
        assert proxy.get_status()["online"] is False


def test_stale_when_mariadb_stops(status, mariadb_proxy, redis_client):
    fresh = status.get_status()
    mariadb_proxy.cut()
    redis_client.delete(FRESH_KEY)

    stale = status.get_status()
    assert stale["stale"] is True
    assert stale["updated_at"] == fresh["updated_at"]
    assert stale["rates"] == fresh["rates"]
    assert stale["online"] is True
    assert status.ready()["mariadb"] is False

    mariadb_proxy.restore()
    assert status.get_status()["stale"] is False


def test_no_answer_ever_built(status, mariadb_proxy, redis_client):
    mariadb_proxy.cut()
    redis_client.delete(CACHE_KEY, FRESH_KEY)
    import services.status.service as module
    module._last_good = None
    with pytest.raises(ServiceUnavailable):
        status.get_status()


def test_ready(status):
    assert status.ready() == {"mariadb": True, "redis": True, "game_port": True}


def test_log_lines_carry_request_id(status, status_config, mariadb_proxy, redis_client, caplog):
    status.get_status()
    mariadb_proxy.cut()
    redis_client.delete(FRESH_KEY)
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.WARNING, logger="services.status"):
        with ServiceRpcProxy("status", status_config, context_data={"request_id": "status-trace-01"},
                             timeout=30) as proxy:
            assert proxy.get_status()["stale"] is True

    records = [record for record in caplog.records if record.name.startswith("services.status")]
    assert records
    assert all(record.request_id == "status-trace-01" for record in records)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("game_port", "5190x", r"config STATUS.game_port \(TZR_GAME_PORT\) must be an integer, got '5190x'"),
        ("ttl", "0", r"config STATUS.ttl \(TZR_STATUS_TTL\) must be at least 1"),
        ("probe_timeout", "fast", r"config STATUS.probe_timeout must be a number"),
    ],
)
def test_bad_setting_named(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        StatusSettings.from_config({"STATUS": {key: value}})
