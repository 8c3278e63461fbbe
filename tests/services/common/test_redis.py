"""The Redis provider against the real server: config, client, shutdown, readiness, eventlet."""

import logging
import socket
import time
from unittest.mock import Mock

import eventlet
import pytest
import redis
from nameko.containers import ServiceContainer
from nameko.exceptions import ConfigurationError
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from waiting import wait_for
from services.common.redis import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    Redis,
    RedisUnavailable,
    describe,
    ping,
)
from services.common.secrets import SecretError


SECTION = "REDIS"
SERVICE_NAME = "probe"
CLIENT_NAME = f"{SERVICE_NAME}.cache"
CONCURRENT_WORKERS = 8
BLPOP_SECONDS = 0.5


def bind_provider(section_config: dict) -> Redis:
    container = Mock(spec=ServiceContainer, config={SECTION: section_config}, service_name=SERVICE_NAME)
    provider = Redis(SECTION).bind(container, "cache")
    # bind() keeps only a weak reference to the container.
    provider.mock_container = container
    return provider


@pytest.fixture
def provider(redis_url):
    """A started provider; killed at the end whatever the test did."""
    provider = bind_provider({"url": redis_url, "max_connections": 3, "pool_timeout": 2})
    provider.setup()
    provider.start()
    yield provider
    provider.kill()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def use_connections(client: redis.Redis, count: int) -> None:
    """Make the pool open ``count`` connections by running as many BLPOPs at once."""
    pool = eventlet.GreenPool()
    for _ in range(count):
        pool.spawn(client.blpop, ["tzr-test:empty"], timeout=0.1)
    pool.waitall()


class TestSetup:
    def test_defaults(self):
        provider = bind_provider({"url": "redis://127.0.0.1:6379/0"})

        provider.setup()

        settings = provider.settings
        assert settings.socket_timeout == DEFAULT_SOCKET_TIMEOUT
        assert settings.max_connections == DEFAULT_MAX_CONNECTIONS
        assert settings.pool_timeout == DEFAULT_POOL_TIMEOUT
        assert settings.password is None

    def test_missing_url(self):
        provider = bind_provider({"socket_timeout": 1})

        with pytest.raises(ConfigurationError, match=f"{SECTION}.url is missing"):
            provider.setup()

    @pytest.mark.parametrize("url", [
        "redis://:hunter2@127.0.0.1:6379/0",
        "redis://default:hunter2@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=hunter2",
    ])
    def test_password_in_url(self, url):
        provider = bind_provider({"url": url})

        with pytest.raises(ConfigurationError) as caught:
            provider.setup()

        assert "password_secret" in str(caught.value)
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize("url", [
        "http://127.0.0.1:6379/0",
        "127.0.0.1:6379",
        "redis://127.0.0.1:6379/cache",
    ])
    def test_invalid_url(self, url):
        provider = bind_provider({"url": url})

        with pytest.raises(ConfigurationError, match=f"{SECTION}.url"):
            provider.setup()

    @pytest.mark.parametrize("key, value", [
        ("max_connections", 0),
        ("socket_timeout", "soon"),
        ("pool_timeout", -2),
    ])
    def test_invalid_number(self, key, value):
        provider = bind_provider({"url": "redis://127.0.0.1:6379/0", key: value})

        with pytest.raises(ConfigurationError, match=f"{SECTION}.{key}"):
            provider.setup()

    def test_unset_secret_means_no_password(self, monkeypatch):
        monkeypatch.delenv("TZR_TEST_REDIS_PASSWORD", raising=False)
        monkeypatch.delenv("TZR_TEST_REDIS_PASSWORD_FILE", raising=False)
        provider = bind_provider({
            "url": "redis://127.0.0.1:6379/0",
            "password_secret": "TZR_TEST_REDIS_PASSWORD",
        })

        provider.setup()

        assert provider.settings.password is None

    def test_unreadable_secret_file_fails_setup(self, monkeypatch, tmp_path):
        monkeypatch.delenv("TZR_TEST_REDIS_PASSWORD", raising=False)
        monkeypatch.setenv("TZR_TEST_REDIS_PASSWORD_FILE", str(tmp_path / "absent"))
        provider = bind_provider({
            "url": "redis://127.0.0.1:6379/0",
            "password_secret": "TZR_TEST_REDIS_PASSWORD",
        })

        with pytest.raises(SecretError, match="TZR_TEST_REDIS_PASSWORD_FILE"):
            provider.setup()


class TestLifecycle:
    def test_start_opens_no_connection(self, provider, redis_connection_count):
        assert redis_connection_count(CLIENT_NAME) == 0

    def test_get_dependency_returns_client(self, provider, redis_url, redis_client):
        client = provider.get_dependency(Mock())

        client.set("tzr-test:greeting", "привет")

        assert isinstance(client, redis.Redis)
        assert redis_client.get("tzr-test:greeting") == "привет".encode()

    def test_client_uses_configured_database(self, provider, redis_url):
        database = int(redis_url.rsplit("/", 1)[1])

        assert provider.client.connection_pool.connection_kwargs["db"] == database
        assert describe(provider.client).endswith(f"/{database}")

    def test_connections_named_after_service(self, provider, redis_connection_count):
        use_connections(provider.client, 2)

        assert redis_connection_count(CLIENT_NAME) == 2

    def test_pool_caps_connections(self, provider, redis_connection_count):
        use_connections(provider.client, 6)

        assert redis_connection_count(CLIENT_NAME) == 3

    def test_stop_closes_every_connection(self, provider, redis_connection_count):
        use_connections(provider.client, 3)

        provider.stop()

        assert wait_for(lambda: redis_connection_count(CLIENT_NAME) == 0)
        assert provider.client is None

    def test_kill_closes_connection_in_use(self, provider, redis_connection_count):
        waiter = eventlet.spawn(provider.client.blpop, ["tzr-test:empty"], timeout=2)
        assert wait_for(lambda: redis_connection_count(CLIENT_NAME) == 1)

        provider.kill()

        assert wait_for(lambda: redis_connection_count(CLIENT_NAME) == 0)
        waiter.kill()

    def test_kill_twice(self, provider):
        provider.kill()
        provider.kill()

        assert provider.client is None

    def test_start_while_server_down(self):
        provider = bind_provider({"url": f"redis://127.0.0.1:{unused_port()}/0", "socket_timeout": 1})
        provider.setup()

        provider.start()

        with pytest.raises(RedisUnavailable, match="127.0.0.1"):
            ping(provider.client)
        provider.stop()


class TestPing:
    def test_ping_ok(self, provider):
        assert ping(provider.client) is None

    def test_server_down_fails_fast(self):
        provider = bind_provider({"url": f"redis://127.0.0.1:{unused_port()}/0", "socket_timeout": 1})
        provider.setup()
        provider.start()

        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            ping(provider.client)
        elapsed = time.monotonic() - started
        provider.stop()

        # A refused connection is not retried.
        assert elapsed < 0.5

    def test_password_from_secret(self, redis_url, monkeypatch, caplog):
        # The test server's default user is "nopass", which accepts any
        # password, so this checks what the pool sends rather than a rejection.
        monkeypatch.setenv("TZR_TEST_REDIS_PASSWORD", "not-the-password")
        provider = bind_provider({"url": redis_url, "password_secret": "TZR_TEST_REDIS_PASSWORD"})

        with caplog.at_level(logging.DEBUG, logger="services.common.redis"):
            provider.setup()
            provider.start()
            ping(provider.client)
            provider.stop()

        assert provider.settings.password == "not-the-password"
        assert "not-the-password" not in repr(provider.settings)
        assert "not-the-password" not in caplog.text


class TestPool:
    def test_pool_timeout(self, redis_url):
        provider = bind_provider({"url": redis_url, "max_connections": 1, "pool_timeout": 0.3})
        provider.setup()
        provider.start()
        holder = eventlet.spawn(provider.client.blpop, ["tzr-test:empty"], timeout=1)
        eventlet.sleep(0.1)

        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            provider.client.get("tzr-test:anything")
        waited = time.monotonic() - started
        holder.wait()
        provider.stop()

        assert waited >= 0.3
        assert waited < 0.9

    def test_dropped_idle_connection_replaced(self, provider, redis_client, redis_connection_count):
        # redis-py checks a pooled connection for a closed socket on checkout
        # and reconnects, so the next command does not fail.
        client = provider.client
        client.set("tzr-test:key", "1")
        killed = client.client_id()
        redis_client.client_kill_filter(_id=killed)

        assert client.get("tzr-test:key") == b"1"
        assert client.client_id() != killed
        assert redis_connection_count(CLIENT_NAME) == 1

    def test_blocking_command_past_socket_timeout(self, redis_url):
        provider = bind_provider({"url": redis_url, "socket_timeout": 0.3})
        provider.setup()
        provider.start()

        with pytest.raises(redis.TimeoutError):
            provider.client.blpop(["tzr-test:empty"], timeout=1)
        provider.stop()


class RedisProbe:
    name = "redis_probe"

    cache = Redis(SECTION)

    @rpc
    def pop(self, key, seconds):
        return self.cache.blpop([key], timeout=seconds)


@pytest.mark.integration
def test_concurrent_workers_overlap(container_factory, rabbit_config, redis_url, redis_connection_count):
    config = {
        **rabbit_config,
        "max_workers": CONCURRENT_WORKERS + 2,
        SECTION: {"url": redis_url, "max_connections": CONCURRENT_WORKERS},
    }
    container = container_factory(RedisProbe, config)
    container.start()

    with ServiceRpcProxy("redis_probe", config, timeout=30) as probe:
        # Open the pool's connections first, so the timing below covers only the BLPOPs.
        warm_up = [probe.pop.call_async("tzr-test:empty", 0.3) for _ in range(CONCURRENT_WORKERS)]
        assert [reply.result() for reply in warm_up] == [None] * CONCURRENT_WORKERS
        assert redis_connection_count("redis_probe.cache") == CONCURRENT_WORKERS

        started = time.monotonic()
        replies = [probe.pop.call_async("tzr-test:empty", BLPOP_SECONDS) for _ in range(CONCURRENT_WORKERS)]
        results = [reply.result() for reply in replies]
        elapsed = time.monotonic() - started

    serial_seconds = CONCURRENT_WORKERS * BLPOP_SECONDS
    assert results == [None] * CONCURRENT_WORKERS
    assert elapsed >= BLPOP_SECONDS
    assert elapsed < serial_seconds * 0.5, f"{CONCURRENT_WORKERS} BLPOPs took {elapsed:.2f} s"

    container.stop()

    assert wait_for(lambda: redis_connection_count("redis_probe.cache") == 0)
