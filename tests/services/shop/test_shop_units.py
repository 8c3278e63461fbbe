"""Shop page parsing, category paging, settings and the page generator, without services."""

import os
import subprocess
import sys
from urllib.parse import quote, unquote

import pytest
from nameko.exceptions import ConfigurationError

from services.game.client import BotSession, BotSettings, GameConnectFailed
from services.game.framing import GameProtocolError
from services.game.password import transform_password
from services.game.simulator import GameServerSimulator
from services.shop.pages import ShopPageError, parse_page, read_item
from services.shop.scrape import CategoryReader, ScrapeSettings, SessionLost
from services.shop.settings import ShopSettings
from services.shop.shopgen import drift, generate_catalog, write_pages
from services.shop.shopgen import main as shopgen_main


KEY = transform_password("unit-owl")
FAST = ScrapeSettings(page_delay=0, retry_delay=0, page_attempts=2, max_pages=20)


def sh(body: str, c: str = "a", s: str = "", p: int = 0) -> bytes:
    return f'<SH c="{c}" s="{s}" p="{p}">{body}</SH>'.encode()


# PARSING


def test_every_attribute_is_typed():
    item = read_item(5, {
        "id": "5", "txt": "АК-74", "name": "v1", "type": "1.7", "cost": "1200.50", "quality": "80",
        "maxquality": "100", "massa": "3.5", "damage": "S3-7,E1-2", "protect": "B1-4", "calibre": "7.62",
        "range": "20", "grouping": "4", "piercing": "250", "max_count": "30", "count": "2", "rOD": "2",
        "nskill": "3", "shot": "2-4,3-6", "st": "GH", "OD": "2", "min": "level=5,str=20,int=3,intel=4,man!1",
        "up": "str=2", "build_in": "300.1, 300.4", "owner": "Ёжик", "section": "1", "lvl": "7",
        "put_day": "1764547200", "p2": "x",
    })
    assert item.bad_attributes == []
    assert (float(item.price), item.quality, item.max_quality, float(item.weight)) == (1200.5, 80, 100, 3.5)
    assert item.damage == [{"type": "S", "min": 3, "max": 7}, {"type": "E", "min": 1, "max": 2}]
    assert item.protection == [{"type": "B", "min": 1, "max": 4}]
    assert float(item.piercing) == 2.5
    assert item.magazine == 30
    assert item.quantity == 2
    assert item.attack_modes == [{"mode": 2, "od": 4}, {"mode": 3, "od": 6}]
    assert item.requirements == {"level": 5, "strength": 20, "dexterity": None, "accuracy": None, "intuition": 3,
                                 "intelligence": 4, "endurance": None, "gender": "M"}
    assert item.bonuses == {"str": 2}
    assert item.build_in == ["300.1", "300.4"]
    assert (item.owner, item.npc_stock, item.section, item.level) == ("Ёжик", False, 1, 7)
    assert item.listed_at.isoformat() == "2025-12-01T00:00:00+00:00"
    assert item.raw["p2"] == "x"


def test_npc_stock_gets_no_invented_seller():
    item = read_item(6, {"id": "6", "infinty": "1", "cost": "0"})
    assert item.npc_stock is True
    assert item.owner is None
    assert item.price == 0
    assert item.quantity == 1


@pytest.mark.parametrize(("attributes", "flagged"), [
    ({"piercing": "5.5x"}, ["piercing"]),
    ({"piercing": "100000000"}, []),
    ({"piercing": "100000000000"}, ["piercing"]),
    ({"massa": "100000000"}, ["massa"]),
    ({"cost": "99999999999999"}, ["cost"]),
    ({"cost": "1,5"}, ["cost"]),
    ({"quality": "99999999999"}, ["quality"]),
    ({"count": "-1"}, ["count"]),
    ({"damage": "S3-7,zz"}, ["damage"]),
    ({"shot": "2-x"}, ["shot"]),
    ({"min": "level=a"}, ["min"]),
    ({"up": "str"}, ["up"]),
    ({"put_day": "12"}, ["put_day"]),
])
def test_bad_attribute_flagged_item_kept(attributes, flagged):
    item = read_item(7, {"id": "7", **attributes})
    assert item.bad_attributes == flagged
    assert item.item_id == 7


def test_groups_and_unusable_entries():
    page = parse_page(sh('<O txt="9mm" name="a9" type="2.5" count="4"/><O id="x1" cost="1"/>'
                         '<O txt="no id"/><O name="a,b" type="1" count="2"/><O id="8" count="250"/>'))
    assert [(group.name, group.type, group.count) for group in page.groups] == [("a9", "2.5", 4)]
    assert page.groups[0].filter_text == "name:a9,type:2.5"
    assert [item.item_id for item in page.items] == [8]
    assert page.items[0].quantity == 250
    assert len(page.malformed) == 3


@pytest.mark.parametrize(("data", "match"), [
    (b'<!DOCTYPE SH [<!ENTITY x "boom">]><SH c="a">&x;</SH>', "DOCTYPE"),
    (b'<SH c="a"><O id="1"/>', "well-formed"),
    (b'<OK/>', "not <SH>"),
    (b'<SH c="a"><O id="1"><X><Y/></X></O></SH>', "deeper"),
    (b'<SH c="a">' + b" " * (4 * 1024 * 1024) + b"</SH>", "limit"),
    (b'<SH c="\xff"/>', "not valid utf-8"),
])
def test_unusable_pages_are_refused(data, match):
    with pytest.raises(ShopPageError, match=match):
        parse_page(data)


def test_external_entities_are_never_loaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    declared = f'<!DOCTYPE SH [<!ENTITY ext SYSTEM "file://{secret}">]><SH c="a"><O id="1" txt="&ext;"/></SH>'
    with pytest.raises(ShopPageError, match="DOCTYPE"):
        parse_page(declared.encode())
    with pytest.raises(ShopPageError, match="well-formed"):
        parse_page(b'<SH c="a"><O id="1" txt="&ext;"/></SH>')


# PAGING


class FakeShop:
    """Pages by (category, filter, page); a missing page repeats the last one, as the game server does."""

    def __init__(self, pages: dict, failing: set = frozenset()):
        self.pages = pages
        self.failing = set(failing)
        self.requests = []

    def __call__(self, category, filter_text, page):
        self.requests.append((category, filter_text, page))
        if (category, filter_text, page) in self.failing:
            raise GameProtocolError("the reply is not well-formed XML")
        listing = [number for (c, s, number) in self.pages if (c, s) == (category, filter_text)]
        if not listing:
            return sh("", category, filter_text, page)
        last = max(listing)
        return self.pages[(category, filter_text, min(page, last))].replace(
            f'p="{min(page, last)}"'.encode(), f'p="{page}"'.encode())


def test_paging_stops_at_repeat_groups_once():
    group = '<O txt="9mm" name="a9" type="2.5" count="3"/>'
    shop = FakeShop({
        ("a", "", 0): sh(group + '<O id="1" name="x" type="1"/><O id="2" name="x" type="1"/>', p=0),
        ("a", "", 1): sh(group + '<O id="3" name="x" type="1"/>', p=1),
        ("a", "name:a9,type:2.5", 0): sh('<O id="10" name="a9" type="2.5"/><O id="11" name="a9" type="2.5"/>',
                                         s="name:a9,type:2.5", p=0),
        ("a", "name:a9,type:2.5", 1): sh('<O id="11" name="a9" type="2.5"/><O id="1" name="x" type="1"/>',
                                         s="name:a9,type:2.5", p=1),
    })
    result = CategoryReader(shop, FAST).read("a")
    assert result.complete
    assert sorted(result.items) == [1, 2, 3, 10, 11]
    assert result.groups == 1
    assert result.group_shortfall == 1
    assert shop.requests == [("a", "", 0), ("a", "", 1), ("a", "", 2),
                             ("a", "name:a9,type:2.5", 0), ("a", "name:a9,type:2.5", 1),
                             ("a", "name:a9,type:2.5", 2)]


def test_groups_only_first_page_continues():
    shop = FakeShop({
        ("q", "", 0): sh('<O name="kit" type="3.12" count="1"/>', "q", p=0),
        ("q", "", 1): sh('<O id="5"/>', "q", p=1),
        ("q", "name:kit,type:3.12", 0): sh('<O id="6" name="kit" type="3.12"/>', "q", "name:kit,type:3.12"),
    })
    result = CategoryReader(shop, FAST).read("q")
    assert result.complete
    assert sorted(result.items) == [5, 6]
    assert result.group_shortfall == 0


def test_failing_page_fails_category_keeps_items():
    shop = FakeShop({("v", "", 0): sh('<O id="1"/>', "v", p=0), ("v", "", 1): sh('<O id="2"/>', "v", p=1)},
                    failing={("v", "", 1)})
    result = CategoryReader(shop, FAST).read("v")
    assert not result.complete
    assert list(result.items) == [1]
    assert "page 1" in result.error
    assert shop.requests.count(("v", "", 1)) == 2


def test_reply_for_other_filter_rejected():
    shop = FakeShop({("a", "", 0): sh('<O id="1"/>', s="name:b,type:1")})
    result = CategoryReader(shop, FAST).read("a")
    assert not result.complete
    assert "filter" in result.error


def test_endless_listing_fails():
    class Endless:
        def __call__(self, category, filter_text, page):
            return sh(f'<O id="{page + 1}"/>', category, p=page)

    result = CategoryReader(Endless(), FAST).read("z")
    assert not result.complete
    assert "20 pages" in result.error


def test_lost_session_stops_snapshot():
    def unreachable(category, filter_text, page):
        raise GameConnectFailed("could not connect")

    with pytest.raises(SessionLost, match="could not connect"):
        CategoryReader(unreachable, FAST).read("k")


# SETTINGS


def test_settings_pair_shops_with_bots(monkeypatch):
    monkeypatch.setenv("TZR_SHOP_BOTS", f"moscow=Сова Москва:{KEY}, oasis=owl:{transform_password('x')}")
    settings = ShopSettings.from_config({"SHOP": {"shops": "moscow=Москва,oasis,neva=Нева", "dsn": "x"}})
    assert [(shop.code, shop.name, shop.enabled) for shop in settings.shops] == [
        ("moscow", "Москва", True), ("oasis", "oasis", True), ("neva", "Нева", False)]
    assert settings.shop("moscow").bot.login == "Сова Москва"
    assert KEY not in repr(settings)


@pytest.mark.parametrize(("secret", "shops", "match"), [
    (f"moscow=a:{KEY[:-1]}", "moscow", "40 uppercase"),
    (f"a:{KEY}", "moscow", "not shop=login:KEY"),
    (f"moscow=a:{KEY},moscow=b:{KEY}", "moscow", "repeats the shop"),
    (f"moscow=a:{KEY},oasis=A:{transform_password('y')}", "moscow,oasis", "share one bot"),
    (f"kyiv=a:{KEY}", "moscow", "does not list: kyiv"),
    (None, "Moscow!", "entry 1 needs a code"),
    (None, "moscow,moscow", "listed twice"),
])
def test_bad_settings_name_the_problem_never_the_key(monkeypatch, secret, shops, match):
    monkeypatch.delenv("TZR_SHOP_BOTS_FILE", raising=False)
    if secret is None:
        monkeypatch.delenv("TZR_SHOP_BOTS", raising=False)
    else:
        monkeypatch.setenv("TZR_SHOP_BOTS", secret)
    with pytest.raises(ConfigurationError, match=match) as raised:
        ShopSettings.from_config({"SHOP": {"shops": shops}})
    assert KEY not in str(raised.value)


def test_bad_numbers_name_the_setting(monkeypatch):
    monkeypatch.delenv("TZR_SHOP_BOTS", raising=False)
    with pytest.raises(ConfigurationError, match=r"SHOP.interval \(TZR_SHOP_INTERVAL\)"):
        ShopSettings.from_config({"SHOP": {"shops": "moscow", "interval": "hourly"}})
    with pytest.raises(ConfigurationError, match="game_encoding"):
        ShopSettings.from_config({"SHOP": {"shops": "moscow", "game_encoding": "koi8-r"}})


# GENERATOR AND SIMULATOR


def test_generated_pages_are_served_with_their_groups(tmp_path):
    catalog = generate_catalog(seed=3, offers=30)
    write_pages(tmp_path, catalog)
    group_folders = [path for path in tmp_path.glob("*/*") if path.is_dir()]
    assert group_folders, "the generator made no groups"
    category, folder = group_folders[0].parent.name, group_folders[0].name
    with GameServerSimulator(bots={"owl": KEY}, shop_dir=tmp_path, greeting=False) as simulator:
        settings = BotSettings("127.0.0.1", simulator.port, "owl", KEY, greeting_timeout=0)
        with BotSession(settings) as session:
            grouped = parse_page(session.shop_page(category, unquote(folder), 0).raw)
            escape = session.shop_page(category, "../../etc", 0)
    assert grouped.items
    assert not grouped.groups
    assert escape.element is not None
    assert len(escape.element) == 0
    assert quote("../x", safe="").startswith("..")


def test_drift_changes_what_it_reports():
    before = generate_catalog(seed=4, offers=40)
    after = generate_catalog(seed=4, offers=40)
    counts = drift(after, seed=9)
    old = {offer["id"]: offer for offers in before.values() for offer in offers}
    new = {offer["id"]: offer for offers in after.values() for offer in offers}
    assert counts["removed"] == counts["added"] == round(len(old) * 0.1)
    assert len(set(old) - set(new)) == counts["removed"]
    assert len(set(new) - set(old)) == counts["added"]
    # An offer changed and then sold counts as changed but is gone from the comparison.
    changed = sum(1 for item_id in set(old) & set(new) if old[item_id] != new[item_id])
    assert 0 < changed <= counts["price"] + counts["seller"] + counts["quantity"] + counts["durability"]


def test_shopgen_leaves_a_filled_folder_alone(tmp_path, capsys):
    assert shopgen_main([str(tmp_path), "--offers", "10"]) == 0
    first = sorted(path.read_text(encoding="utf-8") for path in tmp_path.rglob("*.xml"))
    assert shopgen_main([str(tmp_path), "--day", "1"]) == 0
    assert "not empty" in capsys.readouterr().out
    assert sorted(path.read_text(encoding="utf-8") for path in tmp_path.rglob("*.xml")) == first
    assert shopgen_main([str(tmp_path), "--offers", "10", "--day", "1", "--force"]) == 0
    assert sorted(path.read_text(encoding="utf-8") for path in tmp_path.rglob("*.xml")) != first


def test_simulator_takes_the_shop_bots_secret(tmp_path):
    write_pages(tmp_path, generate_catalog(seed=2, offers=10))
    environment = {**os.environ, "TZR_SHOP_BOTS": f"moscow=Сова:{KEY}"}
    environment.pop("TZR_SHOP_BOTS_FILE", None)
    command = [sys.executable, "-m", "services.game.simulator", "--port", "0", "--shop", str(tmp_path),
               "--shop-bots-secret", "TZR_SHOP_BOTS", "--no-greeting"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline().strip().rsplit(":", 1)[1])
        with BotSession(BotSettings("127.0.0.1", port, "Сова", KEY, greeting_timeout=0)) as session:
            assert parse_page(session.shop_page("v", "", 0).raw).items
    finally:
        process.terminate()
        process.communicate(timeout=10)

    environment["TZR_SHOP_BOTS"] = f"moscow=Сова:{KEY[:-2]}"
    failed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 2
    assert "40 uppercase" in failed.stderr
    assert KEY[:-2] not in failed.stderr


def test_large_page_pauses_while_parsed():
    entries = "".join(f'<O id="{number}" cost="1"/>' for number in range(1, 351))
    pauses = []
    page = parse_page(sh(entries), pause=lambda: pauses.append(1))
    assert len(page.items) == 350
    assert len(pauses) == 3
