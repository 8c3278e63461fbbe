"""A running registration service with the game simulator and a fake Telegram."""

import pytest

from services.game.simulator import GameServerSimulator, mariadb_users_writer


BOT_TOKEN = "123456:registration-test-token"
GROUP_ID = "-1001234567890"


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
