"""Constants and helpers of the shop tests, shared by their conftest and test modules."""

from nameko.standalone.rpc import ServiceRpcProxy

from waiting import wait_for
from services.game.password import transform_password


BOT_MOSCOW = "Сова Москва"
BOT_OASIS = "owl-oasis"
KEY_MOSCOW = transform_password("owl-moscow")
KEY_OASIS = transform_password("owl-oasis")


def rpc(config, method, *args, timeout=30):
    with ServiceRpcProxy("shop", config, timeout=timeout) as shop:
        return getattr(shop, method)(*args)


def snapshot_row(pg, snapshot_id) -> dict:
    cursor = pg.execute("SELECT * FROM shop_snapshots WHERE id = %s", (snapshot_id,))
    names = [column.name for column in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def wait_for_snapshot(pg, snapshot_id, timeout=60.0) -> dict:
    assert wait_for(lambda: snapshot_row(pg, snapshot_id)["status"] != "running", timeout), \
        snapshot_row(pg, snapshot_id)
    return snapshot_row(pg, snapshot_id)


def offers(catalog) -> dict[int, dict]:
    """Every offer of a catalog by item id."""
    return {int(offer["id"]): offer for category in catalog.values() for offer in category}
