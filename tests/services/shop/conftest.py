"""Fixtures of the shop tracker tests: generated shop pages served by the simulator, tables and service config."""

import copy

import pytest

from shop_helpers import BOT_MOSCOW, BOT_OASIS, KEY_MOSCOW, KEY_OASIS
from services.game.simulator import GameServerSimulator
from services.shop.shopgen import generate_catalog, write_pages


@pytest.fixture
def catalog():
    """The offers the simulator serves; a test changes it and calls ``shop_pages.write(catalog)``."""
    return copy.deepcopy(_CATALOG)


_CATALOG = generate_catalog(seed=5, offers=40)


class ShopPages:
    def __init__(self, root):
        self.root = root

    def write(self, catalog) -> None:
        write_pages(self.root, catalog)


@pytest.fixture
def shop_pages(tmp_path, catalog):
    pages = ShopPages(tmp_path / "shop")
    pages.write(catalog)
    return pages


@pytest.fixture
def game(shop_pages):
    bots = {BOT_MOSCOW: KEY_MOSCOW, BOT_OASIS: KEY_OASIS}
    with GameServerSimulator(bots=bots, shop_dir=shop_pages.root) as simulator:
        yield simulator


@pytest.fixture
def shop_tables(pg):
    """The shop tables, emptied before the test (its containers stop after this fixture's teardown would run)."""
    pg.execute("TRUNCATE shop_changes, shop_snapshot_items, shop_snapshot_categories, shop_items, shop_snapshots,"
               " shop_templates, shop_shops RESTART IDENTITY CASCADE")
    return pg


@pytest.fixture
def shop_bots(monkeypatch):
    """Bots for moscow and oasis in TZR_SHOP_BOTS; neva has none."""
    monkeypatch.delenv("TZR_SHOP_BOTS_FILE", raising=False)
    monkeypatch.setenv("TZR_SHOP_BOTS", f"moscow={BOT_MOSCOW}:{KEY_MOSCOW}\noasis={BOT_OASIS}:{KEY_OASIS}")
    return monkeypatch


@pytest.fixture
def shop_config(rabbit_config, pg_dsn, game, shop_tables, shop_bots):
    """The shop service reading the simulator; the timer is slow unless a test speeds it up."""
    return {
        **rabbit_config,
        "SHOP": {
            "dsn": pg_dsn,
            "shops": "moscow=Москва,oasis=Оазис,neva=Нева",
            "game_host": "127.0.0.1",
            "game_port": game.port,
            "interval": 3600,
            "tick": 3600,
            "connect_timeout": 1,
            "read_timeout": 1,
            "keepalive_interval": 30,
            "reconnect_attempts": 2,
            "page_attempts": 2,
            "page_retry_delay": 0.05,
            "page_delay": 0,
            "retry_initial_delay": 0.2,
            "retry_max_delay": 1,
            "stale_after": 60,
        },
    }
