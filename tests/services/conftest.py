"""Fixtures for the shared providers: a MariaDB database, a Redis database, a fake Telegram API.

MariaDB: ``TZR_TEST_MARIADB_ADMIN_DSN`` (default ``mysql://root@127.0.0.1:3306``)
names an account, without a password, that may create and drop databases.
Redis: ``TZR_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379``) names the
server. The session claims one empty database among 1 to 15 with a marker
key, so that two test sessions on one server never flush each other's data.
"""

import os
import uuid

import pymysql
import pytest
import redis
from eventlet.semaphore import Semaphore

from fakes.telegram import FakeTelegram
from services.common.mariadb import parse_dsn
from services.game.simulator import GameServerSimulator, mariadb_users_writer


MARIADB_ADMIN_DSN_ENV = "TZR_TEST_MARIADB_ADMIN_DSN"
DEFAULT_MARIADB_ADMIN_DSN = "mysql://root@127.0.0.1:3306"
REDIS_URL_ENV = "TZR_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
REDIS_TEST_DATABASES = range(1, 16)
#: Key that marks a Redis database as taken by a test session; it expires
#: after an hour in case the session dies without cleaning up.
REDIS_CLAIM_KEY = "tzr-test:claimed-by"
REDIS_CLAIM_SECONDS = 3600


def _mariadb_admin(database: str | None = None):
    address = parse_dsn(os.environ.get(MARIADB_ADMIN_DSN_ENV, DEFAULT_MARIADB_ADMIN_DSN))
    return pymysql.connect(
        host=address["host"],
        port=address["port"],
        user=address["user"],
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture
def mariadb_dsn():
    """Create an empty database ``tzr_test_<random>`` for one test and drop it afterwards."""
    address = parse_dsn(os.environ.get(MARIADB_ADMIN_DSN_ENV, DEFAULT_MARIADB_ADMIN_DSN))
    name = f"tzr_test_{uuid.uuid4().hex[:10]}"
    with _mariadb_admin() as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"mysql://{address['user']}@{address['host']}:{address['port']}/{name}"
    finally:
        with _mariadb_admin() as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mariadb(mariadb_dsn):
    """An autocommit connection to the test database, as the MariaDB admin account."""
    with _mariadb_admin(parse_dsn(mariadb_dsn)["database"]) as connection:
        yield connection


@pytest.fixture
def mariadb_connection_count(mariadb, mariadb_dsn):
    """A function that returns how many other sessions are connected to the test database.

    It reads ``information_schema.PROCESSLIST``, leaving out the ``mariadb``
    fixture's own session.
    """
    database = parse_dsn(mariadb_dsn)["database"]
    # Greenthreads of one test may count at the same time; one connection
    # must not run two queries at once.
    lock = Semaphore(1)

    def count() -> int:
        with lock, mariadb.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                (database,),
            )
            return cursor.fetchone()[0]

    return count


@pytest.fixture(scope="session")
def _redis_test_database():
    """Claim an empty Redis database among 1 to 15 for this session and flush it at the end."""
    server_url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL).rstrip("/")
    token = uuid.uuid4().hex
    for number in REDIS_TEST_DATABASES:
        client = redis.Redis.from_url(f"{server_url}/{number}")
        if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS) and client.dbsize() == 1:
            break
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            # Another program's keys are in this database: leave it alone.
            client.delete(REDIS_CLAIM_KEY)
        client.close()
    else:
        pytest.fail(f"no empty Redis database among {REDIS_TEST_DATABASES} on {server_url}")

    try:
        yield client, token, f"{server_url}/{number}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url(_redis_test_database):
    """The URL of this session's Redis database, flushed with FLUSHDB before and after the test.

    The database keeps one marker key, ``tzr-test:claimed-by``, throughout.
    """
    client, token, url = _redis_test_database

    def flush():
        client.flushdb()
        client.set(REDIS_CLAIM_KEY, token, ex=REDIS_CLAIM_SECONDS)

    flush()
    yield url
    flush()


@pytest.fixture
def redis_client(redis_url):
    """A plain redis-py client on the test database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_connection_count(redis_client):
    """A function that returns how many Redis connections carry a client name."""

    def count(client_name: str) -> int:
        return sum(1 for entry in redis_client.client_list() if entry.get("name") == client_name)

    return count


@pytest.fixture
def telegram():
    """A running fake Telegram Bot API on 127.0.0.1, fresh for each test."""
    with FakeTelegram() as fake:
        yield fake


# THE GAME'S DATABASE, WITH TZR HOST'S MIGRATIONS


@pytest.fixture(scope="session")
def gamedb_dsn():
    """A MariaDB database with the game's test tables and the migrations, for the session."""
    from services.registration import db as gamedb

    address = parse_dsn(os.environ.get(MARIADB_ADMIN_DSN_ENV, DEFAULT_MARIADB_ADMIN_DSN))
    name = f"tzr_test_game_{uuid.uuid4().hex[:10]}"
    dsn = f"mysql://{address['user']}@{address['host']}:{address['port']}/{name}"
    gamedb.create_database(dsn)
    try:
        gamedb.apply_test_schema(dsn)
        gamedb.migrate(dsn)
        yield dsn
    finally:
        connection = _mariadb_admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            connection.close()


GAMEDB_TABLES = ("tgplayers", "users", "tzr_registrations", "tzr_telegram_quota")


@pytest.fixture
def gamedb(gamedb_dsn):
    """An autocommit connection to the session's game database, emptied of accounts."""
    arguments = parse_dsn(gamedb_dsn)
    connection = pymysql.connect(
        host=arguments["host"], port=arguments["port"], user=arguments["user"],
        database=arguments["database"], charset="utf8mb4", autocommit=True,
    )
    with connection.cursor() as cursor:
        for table in GAMEDB_TABLES:
            cursor.execute(f"DELETE FROM {table}")
    try:
        yield connection
    finally:
        connection.close()


# THE GAME SERVER SIMULATOR AND A REGISTRATION SERVICE CONFIG




@pytest.fixture
def simulator(gamedb, gamedb_dsn):
    """The game server, writing the accounts it creates into the game's users table."""
    with GameServerSimulator(users_writer=mariadb_users_writer(gamedb_dsn)) as server:
        yield server


@pytest.fixture
def registration_config(rabbit_config, gamedb_dsn, redis_url, simulator, telegram, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", telegram.token)
    return {
        **rabbit_config,
        "GAMEDB": {"dsn": gamedb_dsn, "pool_size": 12},
        "REDIS": {"url": redis_url},
        "REGISTRATION": {
            "game_host": "127.0.0.1",
            "game_port": simulator.port,
            "connect_timeout": 1,
            "reply_timeout": 2,
            "connect_attempts": 2,
            "account_limit": 5,
            "check_group": True,
            "telegram_group_id": telegram.chat_id,
            "telegram_api": telegram.base_url,
            "reconcile_delay": 0.1,
            "request_wait": 5,
            "pending_timeout": 1,
            "reconcile_interval": 3600,
        },
    }
