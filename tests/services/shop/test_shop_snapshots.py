"""Snapshots of the shop service against the simulator: contents, diffs, broken pages, lost sessions, flags."""

import socket
from collections import Counter
from urllib.parse import unquote

import pytest
from nameko.exceptions import RemoteError

from shop_helpers import offers, rpc, snapshot_row, wait_for, wait_for_snapshot
from services.common.errors import ServiceUnavailable, ShopDisabled, ShopNotFound, ValidationFailed
from services.shop.categories import CATEGORY_CODES
from services.shop.service import ShopService
from services.shop.snapshots import Snapshotter


pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def shop(container_factory, shop_config):
    container = container_factory(ShopService, shop_config)
    container.start()
    return shop_config


def take(config, pg, shop="moscow") -> dict:
    started = rpc(config, "start_snapshot", shop)
    assert started["joined"] is False
    return wait_for_snapshot(pg, started["snapshot"]["id"])


def snapshot_items(pg, snapshot_id) -> dict[int, tuple]:
    cursor = pg.execute("SELECT item_id, price, quantity, quality, owner FROM shop_snapshot_items"
                        " WHERE snapshot_id = %s", (snapshot_id,))
    return {record[0]: record[1:] for record in cursor.fetchall()}


def test_snapshot_reads_every_offer_once(shop, shop_tables, game, catalog, shop_pages):
    snapshot = take(shop, shop_tables)

    assert snapshot["status"] == "complete", snapshot
    expected = offers(catalog)
    seen = snapshot_items(shop_tables, snapshot["id"])
    assert set(seen) == set(expected)
    for item_id, (price, quantity, quality, owner) in seen.items():
        offer = expected[item_id]
        assert float(price) == pytest.approx(float(offer["cost"]))
        assert quantity == int(offer.get("count", 1))
        assert quality == (int(offer["quality"]) if "quality" in offer else None)
        assert owner == offer.get("owner")
    categories = shop_tables.execute("SELECT category, status FROM shop_snapshot_categories WHERE snapshot_id = %s",
                                     (snapshot["id"],)).fetchall()
    assert sorted(categories) == sorted((code, "complete") for code in CATEGORY_CODES)
    # Category 1, the bot's own listings, is never asked for; every group is expanded once.
    # (The simulator masks the p attribute in its record, as it masks passwords.)
    requests = Counter((command.attributes["c"], command.attributes["s"]) for command in game.commands("SH"))
    assert all(category != "1" for category, _ in requests)
    expected_requests = {(code, ""): 1 for code in CATEGORY_CODES}
    for folder in shop_pages.root.rglob("0.xml"):
        listing = folder.parent
        category = listing.name if listing.parent == shop_pages.root else listing.parent.name
        text = "" if listing.parent == shop_pages.root else unquote(listing.name)
        expected_requests[(category, text)] = len(list(listing.glob("*.xml")))
    assert requests == expected_requests
    assert snapshot["items"] == len(expected)
    assert snapshot["flagged"] == 0


def test_diff_shows_exactly_what_changed(shop, shop_tables, shop_pages, catalog):
    first = take(shop, shop_tables)
    weapons = catalog["v"]
    priced, sold = weapons[0], weapons[1]
    stack = catalog["d"][0]
    resold = catalog["k"][0]
    worn = catalog["p"][0]
    priced["cost"] = f"{float(priced['cost']) + 111:.2f}"
    stack["count"] = str(int(stack.get("count", 1)) + 7)
    resold["owner"] = "Новый продавец"
    resold.pop("infinty", None)
    worn["quality"] = str(int(worn["quality"]) - 5)
    weapons.remove(sold)
    added = dict(weapons[2], id="990000001", owner="Trader42", cost="999.00")
    catalog["v"].append(added)
    shop_pages.write(catalog)

    second = take(shop, shop_tables)

    assert second["status"] == "complete"
    expected = {
        ("price_changed", int(priced["id"])), ("quantity_changed", int(stack["id"])),
        ("seller_changed", int(resold["id"])), ("durability_changed", int(worn["id"])),
        ("removed", int(sold["id"])), ("added", 990000001),
    }
    diff = rpc(shop, "diff", {"shop": "moscow", "limit": "100"})
    assert (diff["from"]["id"], diff["to"]["id"]) == (first["id"], second["id"])
    assert {(change["kind"], change["item_id"]) for change in diff["items"]} == expected
    assert diff["compared_categories"] == sorted(CATEGORY_CODES)
    price_change = next(change for change in diff["items"] if change["kind"] == "price_changed")
    assert price_change["new_price"] - price_change["old_price"] == pytest.approx(111)

    stored = rpc(shop, "changes", {"since": "2000-01-01", "shop": "moscow", "limit": "100"})
    assert {(change["kind"], change["item_id"]) for change in stored["items"]} == expected
    assert second["changes"] == {"added": 1, "removed": 1, "price_changed": 1, "quantity_changed": 1,
                                 "seller_changed": 1, "durability_changed": 1}
    gone = shop_tables.execute("SELECT gone_at IS NOT NULL FROM shop_items WHERE item_id = %s",
                               (int(sold["id"]),)).fetchone()
    assert gone == (True,)

    item = rpc(shop, "get_item", int(priced["id"]), {})
    assert [entry["snapshot_id"] for entry in item["history"]] == [second["id"], first["id"]]
    assert [change["kind"] for change in item["changes"]] == ["price_changed"]
    assert len(item["template_prices"]) == 2


def test_broken_page_fails_its_category_only(shop, shop_tables, shop_pages, catalog):
    first = take(shop, shop_tables)
    listing = shop_pages.root / "v"
    assert (listing / "1.xml").exists()
    (listing / "1.xml").write_text('<SH c="v" s="" p="1"><O id="1" cost=', encoding="utf-8")

    second = take(shop, shop_tables)

    assert second["status"] == "partial"
    assert "v" in second["error"]
    categories = dict(shop_tables.execute("SELECT category, status FROM shop_snapshot_categories"
                                          " WHERE snapshot_id = %s", (second["id"],)).fetchall())
    assert categories.pop("v") == "failed"
    assert set(categories.values()) == {"complete"}
    # The items on the unread page are not reported as sold, and the page read before the break is kept.
    diff = rpc(shop, "diff", {"shop": "moscow"})
    assert diff["items"] == []
    assert "v" not in diff["compared_categories"]
    kept = snapshot_items(shop_tables, second["id"])
    assert any(str(item_id) in (listing / "0.xml").read_text(encoding="utf-8") for item_id in kept)
    assert first["status"] == "complete"


def test_lost_session_reconnects(shop, shop_tables, game, catalog):
    game.set_fault("drop", commands={"SH"}, count=1)
    snapshot = take(shop, shop_tables)
    assert snapshot["status"] == "complete"
    assert set(snapshot_items(shop_tables, snapshot["id"])) == set(offers(catalog))
    assert game.connections_accepted >= 2


def test_unreachable_game_server_fails_the_snapshot_then_recovers(shop, shop_tables, game):
    game.set_fault("refuse")
    failed = take(shop, shop_tables)
    assert failed["status"] == "failed"
    assert "session" in failed["error"]
    game.clear_faults()
    assert take(shop, shop_tables)["status"] == "complete"


def test_bad_attribute_flags_the_item(shop, shop_tables, shop_pages, catalog):
    rifle = catalog["v"][0]
    rifle.update(piercing="5,5", cost="12,50", damage="S3-7,??")
    shop_pages.write(catalog)

    snapshot = take(shop, shop_tables)

    assert snapshot["status"] == "complete"
    assert snapshot["flagged"] == 1
    record = shop_tables.execute("SELECT bad_attributes, price, piercing, damage FROM shop_items WHERE item_id = %s",
                                 (int(rifle["id"]),)).fetchone()
    assert sorted(record[0]) == ["cost", "damage", "piercing"]
    assert record[1] is None
    assert record[2] is None
    assert record[3] == [{"type": "S", "min": 3, "max": 7}]


def test_second_start_joins_the_running_snapshot(shop, shop_tables, game):
    game.set_fault("slow", commands={"SH"}, delay=0.5, count=2)
    first = rpc(shop, "start_snapshot", "moscow")
    second = rpc(shop, "start_snapshot", "moscow")
    assert second["joined"] is True
    assert second["snapshot"]["id"] == first["snapshot"]["id"]
    assert second["snapshot"]["status"] == "running"
    assert wait_for_snapshot(shop_tables, first["snapshot"]["id"])["status"] == "complete"
    count = shop_tables.execute("SELECT count(*) FROM shop_snapshots").fetchone()[0]
    assert count == 1


def test_start_refuses_unknown_and_botless_shops(shop, shop_tables):
    with pytest.raises(ShopNotFound, match="nowhere"):
        rpc(shop, "start_snapshot", "nowhere")
    with pytest.raises(ShopDisabled, match="neva"):
        rpc(shop, "start_snapshot", "neva")
    with pytest.raises(ValidationFailed):
        rpc(shop, "start_snapshot", 42)


def test_timer_takes_one_snapshot_per_shop(container_factory, shop_config, shop_tables):
    config = {**shop_config, "SHOP": {**shop_config["SHOP"], "tick": 0.2}}
    container = container_factory(ShopService, config)
    container.start()

    def finished():
        return shop_tables.execute("SELECT count(*) FROM shop_snapshots WHERE status = 'complete'").fetchone()[0]

    assert wait_for(lambda: finished() == 2, timeout=60)
    eventlet_pause = wait_for(lambda: finished() > 2, timeout=1.0)
    assert not eventlet_pause
    shops = shop_tables.execute("SELECT sh.code, s.trigger FROM shop_snapshots s JOIN shop_shops sh"
                                " ON sh.id = s.shop_id ORDER BY sh.code").fetchall()
    assert shops == [("moscow", "schedule"), ("oasis", "schedule")]
    assert snapshot_row(shop_tables, 1)["finished_at"] is not None


def test_remote_errors_are_typed(shop, shop_tables):
    with pytest.raises(ValidationFailed) as raised:
        rpc(shop, "search_items", {"min_price": "cheap", "colour": "red"})
    assert set(raised.value.fields) == {"min_price", "colour"}
    with pytest.raises(ShopNotFound):
        rpc(shop, "snapshots", {"shop": "atlantis"})
    assert not isinstance(ValidationFailed("x"), RemoteError)


def test_abandoned_snapshot_marked_failed(shop, shop_tables):
    shop_tables.execute("INSERT INTO shop_shops (code, name) VALUES ('moscow', 'Москва')")
    shop_tables.execute("INSERT INTO shop_snapshots (shop_id, trigger, categories_total, updated_at)"
                        " VALUES (1, 'schedule', 26, now() - interval '1 hour')")
    snapshot = take(shop, shop_tables)
    assert snapshot["status"] == "complete"
    abandoned = snapshot_row(shop_tables, 1)
    assert abandoned["status"] == "failed"
    assert "abandoned" in abandoned["error"]


def test_database_down_gives_service_unavailable(container_factory, shop_config):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    dsn = f"postgresql://tzr@127.0.0.1:{closed_port}/tzr"
    config = {**shop_config, "SHOP": {**shop_config["SHOP"], "dsn": dsn, "pool_timeout": 0.5}}
    container_factory(ShopService, config).start()
    with pytest.raises(ServiceUnavailable):
        rpc(config, "search_items", {})
    with pytest.raises(ServiceUnavailable):
        rpc(config, "start_snapshot", "moscow")
    assert rpc(config, "ready") == {"postgres": False}


def test_item_in_two_categories_kept_once(shop, shop_tables, shop_pages, catalog):
    knife = catalog["k"][0]
    catalog["z"].append(dict(knife))
    shop_pages.write(catalog)

    snapshot = take(shop, shop_tables)

    assert snapshot["status"] == "complete"
    category = shop_tables.execute("SELECT category FROM shop_snapshot_items WHERE snapshot_id = %s"
                                   " AND item_id = %s", (snapshot["id"], int(knife["id"]))).fetchall()
    assert category == [("k",)]


def test_timer_backs_off_after_failures(container_factory, shop_config, shop_tables):
    config = {**shop_config, "SHOP": {**shop_config["SHOP"], "retry_initial_delay": 10, "retry_max_delay": 25}}
    container = container_factory(ShopService, config)
    container.start()
    snapshotter = next(extension for extension in container.extensions if isinstance(extension, Snapshotter))
    moscow = snapshotter.settings.shop("moscow")
    assert snapshotter._due(moscow)
    shop_id = snapshotter.shop_id("moscow")

    def failed(seconds_ago):
        shop_tables.execute("INSERT INTO shop_snapshots (shop_id, trigger, categories_total, status, finished_at)"
                            " VALUES (%s, 'schedule', 26, 'failed', now() - make_interval(secs => %s))",
                            (shop_id, seconds_ago))

    failed(100)
    failed(15)
    # Two failures in a row: the next try waits 10 * 2 = 20 seconds after the last one.
    assert not snapshotter._due(moscow)
    failed(30)
    # Three failures: 40 seconds, capped at retry_max_delay, 25.
    assert snapshotter._due(moscow)
    shop_tables.execute("INSERT INTO shop_snapshots (shop_id, trigger, categories_total, status, finished_at)"
                        " VALUES (%s, 'schedule', 26, 'complete', now())", (shop_id,))
    # A success restarts the interval (3600 s).
    assert not snapshotter._due(moscow)
