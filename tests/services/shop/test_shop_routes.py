"""The gateway's shop routes, with the shop service, the simulator, RabbitMQ, Redis and PostgreSQL."""

import socket
import time
import uuid

import pytest
import requests

from shop_helpers import offers, wait_for_snapshot
from services.gateway.guard import hash_api_key
from services.gateway.service import GatewayService
from services.shop.categories import CATEGORY_CODES
from services.shop.service import ShopService


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ADMIN_TOKEN = "admin-token-" + uuid.uuid4().hex
API_KEY = "site-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gateway_config(shop_config, redis_url):
    return {
        **shop_config,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "REDIS": {"url": redis_url},
        "GATEWAY": {
            "api_keys": f"site:{hash_api_key(API_KEY)}",
            "admin_tokens": f"admin:{hash_api_key(ADMIN_TOKEN)}",
            "ip_limit": "10000/minute",
            "key_limit": "10000/minute",
        },
    }


@pytest.fixture
def base_url(runner_factory, gateway_config):
    runner = runner_factory(gateway_config, GatewayService, ShopService)
    runner.start()
    return f"http://{gateway_config['WEB_SERVER_ADDRESS']}"


def get(base_url, path, params=None, **headers):
    return requests.get(f"{base_url}{path}", params=params, headers={"X-API-Key": API_KEY, **headers}, timeout=30)


def admin_start(base_url, shop="moscow", token=ADMIN_TOKEN):
    return requests.post(f"{base_url}/api/admin/shop/snapshots", json={"shop": shop},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def assert_envelope(response, status, code) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def snapshot_through_admin(base_url, pg) -> dict:
    started = admin_start(base_url)
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["joined"] is False
    assert body["snapshot"]["status"] == "running"
    snapshot_id = body["snapshot"]["id"]
    wait_for_snapshot(pg, snapshot_id)
    progress = requests.get(f"{base_url}/api/admin/shop/snapshots/{snapshot_id}",
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    return ok(progress)["snapshot"]


def test_every_shop_route_answers(base_url, shop_tables, shop_pages, catalog):
    first = snapshot_through_admin(base_url, shop_tables)
    assert first["status"] == "complete"
    assert len(first["categories"]) == len(CATEGORY_CODES)
    rifle = catalog["v"][0]
    rifle["cost"] = "1.00"
    shop_pages.write(catalog)
    second = snapshot_through_admin(base_url, shop_tables)

    shops = ok(get(base_url, "/api/shop/shops"))["items"]
    expected_shops = [("moscow", True), ("oasis", True), ("neva", False)]
    assert [(shop["code"], shop["enabled"]) for shop in shops] == expected_shops
    assert shops[0]["last_snapshot"]["id"] == second["id"]
    categories = ok(get(base_url, "/api/shop/categories"))["items"]
    assert [category["code"] for category in categories] == list(CATEGORY_CODES)

    everything = ok(get(base_url, "/api/shop/items", {"limit": 100}))
    assert everything["total"] == len(offers(catalog))
    cheap_rifles = ok(get(base_url, "/api/shop/items", {"category": "v", "max_price": "1", "shop": "moscow"}))
    assert [item["item_id"] for item in cheap_rifles["items"]] == [int(rifle["id"])]
    search = {"name": rifle["txt"][:3].lower(), "type": rifle["type"], "min_price": "0.5", "sort": "-price"}
    named = ok(get(base_url, "/api/shop/items", search))
    assert int(rifle["id"]) in [item["item_id"] for item in named["items"]]
    assert all(item["type"] == rifle["type"] for item in named["items"])

    item = ok(get(base_url, f"/api/shop/items/{rifle['id']}"))
    assert [entry["price"] for entry in item["history"]][0] == 1.0
    assert item["changes"][0]["kind"] == "price_changed"
    prices = ok(get(base_url, f"/api/shop/templates/{item['template_id']}/prices", {"shop": "moscow"}))
    assert len(prices["prices"]) == 2
    assert prices["prices"][0]["min_price"] == 1.0

    snapshots = ok(get(base_url, "/api/shop/snapshots", {"shop": "moscow", "status": "complete"}))
    assert [snapshot["id"] for snapshot in snapshots["items"]] == [second["id"], first["id"]]
    one = ok(get(base_url, f"/api/shop/snapshots/{first['id']}"))
    assert one["id"] == first["id"]
    assert one["status"] == "complete"

    diff = ok(get(base_url, "/api/shop/diff", {"shop": "moscow"}))
    assert [(change["kind"], change["item_id"]) for change in diff["items"]] == [("price_changed", int(rifle["id"]))]
    explicit = ok(get(base_url, "/api/shop/diff", {"from": first["id"], "to": second["id"], "kind": "added"}))
    assert explicit["items"] == []
    assert explicit["total"] == 0
    feed = ok(get(base_url, "/api/shop/changes", {"since": first["started_at"]}))
    assert [change["item_id"] for change in feed["items"]] == [int(rifle["id"])]

    freshness = ok(get(base_url, "/api/shop/freshness", {"shop": "moscow"}))["items"]
    assert len(freshness) == 1
    assert freshness[0]["stale_categories"] == []
    assert {entry["snapshot_id"] for entry in freshness[0]["categories"]} == {second["id"]}


def test_admin_start_joins_and_needs_a_token(base_url, shop_tables, game):
    game.set_fault("slow", commands={"SH"}, delay=0.5, count=2)
    first = admin_start(base_url)
    second = admin_start(base_url)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["joined"] is True
    assert second.json()["snapshot"]["id"] == first.json()["snapshot"]["id"]
    wait_for_snapshot(shop_tables, first.json()["snapshot"]["id"])

    refused = admin_start(base_url, token="wrong")
    assert_envelope(refused, 401, "invalid_admin_token")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert_envelope(admin_start(base_url, "atlantis"), 404, "shop_not_found")
    assert_envelope(admin_start(base_url, "neva"), 503, "shop_disabled")
    bad = requests.post(f"{base_url}/api/admin/shop/snapshots", json={"shop": 1, "colour": "red"},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert set(assert_envelope(bad, 400, "validation_error")["fields"]) == {"colour"}
    missing = requests.get(f"{base_url}/api/admin/shop/snapshots/999999",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert_envelope(missing, 404, "shop_snapshot_not_found")


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/shop/items", {"min_price": "cheap"}, "min_price"),
    ("/api/shop/items", {"min_price": "10", "max_price": "5"}, "max_price"),
    ("/api/shop/items", {"category": "1"}, "category"),
    ("/api/shop/items", {"limit": "0"}, "limit"),
    ("/api/shop/items", {"colour": "red"}, "colour"),
    ("/api/shop/items", [("name", "a"), ("name", "b")], "name"),
    ("/api/shop/items/abc", None, "item_id"),
    ("/api/shop/items/-4", None, "item_id"),
    ("/api/shop/snapshots", {"status": "done"}, "status"),
    ("/api/shop/snapshots/1", {"extra": "1"}, "extra"),
    ("/api/shop/diff", {"kind": "sold"}, "kind"),
    ("/api/shop/diff", {}, "shop"),
    ("/api/shop/diff", {"shop": "moscow"}, "shop"),
    ("/api/shop/changes", {"since": "yesterday"}, "since"),
    ("/api/shop/changes", {"since": "2026-01-02", "until": "2026-01-01"}, "until"),
    ("/api/shop/templates/x/prices", None, "template_id"),
])
def test_bad_parameters_are_named(base_url, shop_tables, path, params, field):
    body = assert_envelope(get(base_url, path, params), 400, "validation_error")
    assert field in body["fields"]


@pytest.mark.parametrize(("path", "params", "code"), [
    ("/api/shop/items/123456", None, "shop_item_not_found"),
    ("/api/shop/snapshots/123456", None, "shop_snapshot_not_found"),
    ("/api/shop/templates/123456/prices", None, "shop_template_not_found"),
    ("/api/shop/items", {"shop": "atlantis"}, "shop_not_found"),
    ("/api/shop/freshness", {"shop": "atlantis"}, "shop_not_found"),
    ("/api/shop/diff", {"from": "1", "to": "2"}, "shop_snapshot_not_found"),
])
def test_unknown_ids_are_404(base_url, shop_tables, path, params, code):
    assert_envelope(get(base_url, path, params), 404, code)


def test_messages_are_russian_unless_english_is_asked(base_url, shop_tables):
    russian = assert_envelope(get(base_url, "/api/shop/items", {"shop": "atlantis"}), 404, "shop_not_found")
    english = assert_envelope(get(base_url, "/api/shop/items", {"shop": "atlantis"}, **{"Accept-Language": "en"}),
                              404, "shop_not_found")
    assert "Магазин" in russian["message"]
    assert english["message"] == "No shop atlantis is configured."
    assert_envelope(requests.get(f"{base_url}/api/shop/items", timeout=30), 401, "invalid_api_key")


def test_openapi_describes_the_shop_routes(base_url):
    document = requests.get(f"{base_url}/api/openapi.json", timeout=30).json()
    for path in ("/api/shop/items", "/api/shop/items/{item_id}", "/api/shop/diff", "/api/shop/changes",
                 "/api/shop/freshness", "/api/admin/shop/snapshots", "/api/admin/shop/snapshots/{snapshot_id}"):
        assert path in document["paths"], path
    assert "202" in document["paths"]["/api/admin/shop/snapshots"]["post"]["responses"]
    assert {"ShopItem", "ShopSnapshot", "ShopChange"} <= set(document["components"]["schemas"])


def test_item_in_two_shops_needs_shop(base_url, shop_tables, catalog):
    snapshot_through_admin(base_url, shop_tables)
    started = admin_start(base_url, "oasis")
    assert started.status_code == 202
    wait_for_snapshot(shop_tables, started.json()["snapshot"]["id"])
    item_id = next(iter(offers(catalog)))

    ambiguous = assert_envelope(get(base_url, f"/api/shop/items/{item_id}"), 400, "validation_error")
    assert set(ambiguous["fields"]) == {"shop"}
    oasis = ok(get(base_url, f"/api/shop/items/{item_id}", {"shop": "oasis"}))
    assert oasis["shop"] == "oasis"
    assert len(oasis["history"]) == 1
    moscow_only = ok(get(base_url, "/api/shop/items", {"shop": "moscow", "limit": 100}))
    assert {item["shop"] for item in moscow_only["items"]} == {"moscow"}


def test_shop_service_down_gives_503_at_once(runner_factory, gateway_config):
    runner_factory(gateway_config, GatewayService).start()
    base_url = f"http://{gateway_config['WEB_SERVER_ADDRESS']}"
    started = time.monotonic()
    assert_envelope(get(base_url, "/api/shop/items"), 503, "service_unavailable")
    assert_envelope(admin_start(base_url), 503, "service_unavailable")
    assert time.monotonic() - started < 5
