"""SQL of the shop API: shops, items, snapshots, diffs, changes and freshness.

Every function takes an open connection and parameters already checked by
:mod:`services.battles.params`, and returns JSON-ready values: times as ISO
8601 text in UTC, prices as numbers. "On sale now" means: in the newest
snapshot that read the item's category to its end, per shop and category.
"""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.common.errors import (
    ShopItemNotFound,
    ShopSnapshotNotFound,
    ShopTemplateNotFound,
    ValidationFailed,
)
from services.shop.store import CHANGE_COLUMNS, DIFF_SQL, SNAPSHOT_COLUMNS, row, rows


#: Per shop and category, the newest finished snapshot that read the category to its end.
CURRENT_CTE = """
current AS (
    SELECT DISTINCT ON (s.shop_id, c.category) s.shop_id, c.category, s.id AS snapshot_id, s.started_at,
           c.finished_at
    FROM shop_snapshots s JOIN shop_snapshot_categories c ON c.snapshot_id = s.id AND c.status = 'complete'
    WHERE s.status IN ('complete', 'partial')
    ORDER BY s.shop_id, c.category, s.id DESC
)"""

ITEM_COLUMNS = (
    "i.item_id, sh.code AS shop, i.category, i.template_id, t.name AS template, t.type, i.txt, i.npc_stock,"
    " i.weight, i.damage, i.protection, i.caliber, i.range, i.grouping, i.piercing, i.magazine, i.reload_od,"
    " i.skill, i.attack_modes, i.slots, i.equip_od, i.requirements, i.bonuses, i.build_in, i.section, i.level,"
    " i.listed_at, i.bad_attributes, i.first_seen_at, i.last_seen_at, i.gone_at"
)
SORTS = {
    "price": "si.price ASC NULLS LAST, si.item_id",
    "-price": "si.price DESC NULLS LAST, si.item_id",
    "name": "i.txt, si.price NULLS LAST, si.item_id",
    "newest": "i.first_seen_at DESC, si.item_id DESC",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _plain(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _clean(record: dict) -> dict:
    return {key: _plain(value) for key, value in record.items()}


def _page(params: dict) -> tuple[int, int]:
    return params["limit"], (params["page"] - 1) * params["limit"]


def _paged(items: list, total: int, params: dict) -> dict:
    limit, offset = _page(params)
    return {"items": items, "total": total, "page": params["page"], "limit": limit,
            "has_more": offset + len(items) < total}


class _Where:
    def __init__(self):
        self.parts: list[str] = []
        self.values: dict = {}

    def add(self, condition: str, **values) -> None:
        self.parts.append(condition)
        self.values.update(values)

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "TRUE"


# ---------------------------------------------------------------------------
# Shops and freshness.


def shops(connection, configured: list[dict]) -> dict:
    """Return the configured shops with their newest snapshot and the running one."""
    found = {record["code"]: record for record in rows(
        connection,
        "SELECT sh.code,"
        " (SELECT row_to_json(x) FROM (SELECT s.id, s.status, s.started_at, s.finished_at, s.items"
        "   FROM shop_snapshots s WHERE s.shop_id = sh.id AND s.status <> 'running' ORDER BY s.id DESC LIMIT 1) x)"
        "   AS last_snapshot,"
        " (SELECT s.id FROM shop_snapshots s WHERE s.shop_id = sh.id AND s.status = 'running') AS running_snapshot"
        " FROM shop_shops sh")}
    items = []
    for shop in configured:
        record = found.get(shop["code"], {})
        items.append({**shop, "last_snapshot": record.get("last_snapshot"),
                      "running_snapshot": record.get("running_snapshot")})
    return {"items": items}


def freshness(connection, params: dict, configured: list[dict], categories: tuple, interval: float) -> dict:
    """Per shop and category: when it was last read to its end, and whether that is older than two intervals."""
    where = _Where()
    if params.get("shop"):
        where.add("sh.code = %(shop)s", shop=params["shop"])
    records = rows(connection,
                   f"WITH {CURRENT_CTE} SELECT sh.code, c.category, c.snapshot_id, c.finished_at"
                   f" FROM current c JOIN shop_shops sh ON sh.id = c.shop_id WHERE {where.sql()}", where.values)
    last_tries = rows(connection,
                      "SELECT DISTINCT ON (s.shop_id, c.category) sh.code, c.category, c.status, c.finished_at"
                      " FROM shop_snapshot_categories c JOIN shop_snapshots s ON s.id = c.snapshot_id"
                      f" JOIN shop_shops sh ON sh.id = s.shop_id WHERE {where.sql()}"
                      " ORDER BY s.shop_id, c.category, c.snapshot_id DESC", where.values)
    read = {(record["code"], record["category"]): record for record in records}
    tried = {(record["code"], record["category"]): record for record in last_tries}
    now = datetime.now(timezone.utc)
    result = []
    for shop in configured:
        if params.get("shop") and shop["code"] != params["shop"]:
            continue
        entries = []
        for category in categories:
            complete = read.get((shop["code"], category))
            last = tried.get((shop["code"], category))
            age = (now - complete["finished_at"]).total_seconds() if complete else None
            entries.append({
                "category": category,
                "read_at": _iso(complete["finished_at"]) if complete else None,
                "snapshot_id": complete["snapshot_id"] if complete else None,
                "age_seconds": round(age) if age is not None else None,
                "stale": age is None or age > 2 * interval,
                "last_attempt_status": last["status"] if last else None,
                "last_attempt_at": _iso(last["finished_at"]) if last else None,
            })
        ages = [entry["age_seconds"] for entry in entries if entry["age_seconds"] is not None]
        result.append({"shop": shop["code"], "enabled": shop["enabled"],
                       "oldest_age_seconds": max(ages) if len(ages) == len(entries) else None,
                       "stale_categories": [entry["category"] for entry in entries if entry["stale"]],
                       "categories": entries})
    return {"items": result, "interval_seconds": interval}


# ---------------------------------------------------------------------------
# Items.


def search_items(connection, params: dict) -> dict:
    where = _Where()
    if params.get("shop"):
        where.add("sh.code = %(shop)s", shop=params["shop"])
    if params.get("category"):
        where.add("cur.category = %(category)s", category=params["category"])
    if params.get("name"):
        pattern = "%" + params["name"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.add("(i.txt ILIKE %(name)s OR t.name ILIKE %(name)s)", name=pattern)
    if params.get("type"):
        where.add("t.type = %(type)s", type=params["type"])
    if params.get("template_id") is not None:
        where.add("si.template_id = %(template_id)s", template_id=params["template_id"])
    if params.get("min_price") is not None:
        where.add("si.price >= %(min_price)s", min_price=params["min_price"])
    if params.get("max_price") is not None:
        where.add("si.price <= %(max_price)s", max_price=params["max_price"])
    if params.get("seller"):
        where.add("si.owner = %(seller)s", seller=params["seller"])
    if params.get("npc_stock") is not None:
        where.add("si.npc_stock = %(npc_stock)s", npc_stock=params["npc_stock"])
    source = (f"WITH {CURRENT_CTE} SELECT {{columns}} FROM current cur"
              " JOIN shop_snapshot_items si ON si.snapshot_id = cur.snapshot_id AND si.category = cur.category"
              " JOIN shop_items i ON i.shop_id = cur.shop_id AND i.item_id = si.item_id"
              " JOIN shop_shops sh ON sh.id = cur.shop_id"
              " LEFT JOIN shop_templates t ON t.id = si.template_id"
              f" WHERE {where.sql()}")
    total = row(connection, source.format(columns="count(*) AS n"), where.values)["n"]
    limit, offset = _page(params)
    records = rows(connection,
                   source.format(columns=f"{ITEM_COLUMNS}, si.price, si.quantity, si.quality, si.max_quality,"
                                         " si.owner, cur.snapshot_id, cur.started_at AS seen_at")
                   + f" ORDER BY {SORTS[params['sort']]} LIMIT %(limit)s OFFSET %(offset)s",
                   {**where.values, "limit": limit, "offset": offset})
    return _paged([_clean(record) for record in records], total, params)


def get_item(connection, item_id: int, params: dict) -> dict:
    where = _Where()
    where.add("i.item_id = %(item)s", item=item_id)
    if params.get("shop"):
        where.add("sh.code = %(shop)s", shop=params["shop"])
    found = rows(connection,
                 f"SELECT {ITEM_COLUMNS}, i.shop_id, i.price, i.quantity, i.quality, i.max_quality, i.owner, i.raw"
                 " FROM shop_items i JOIN shop_shops sh ON sh.id = i.shop_id"
                 f" LEFT JOIN shop_templates t ON t.id = i.template_id WHERE {where.sql()}", where.values)
    if not found:
        raise ShopItemNotFound(f"item {item_id} is in no snapshot", params={"item_id": item_id})
    if len(found) > 1:
        raise ValidationFailed(f"item {item_id} is in several shops", fields={"shop": "shop.ambiguous"})
    item = found[0]
    shop_id = item.pop("shop_id")
    history = rows(connection,
                   "SELECT si.snapshot_id, s.started_at AS seen_at, si.price, si.quantity, si.quality, si.max_quality,"
                   " si.owner FROM shop_snapshot_items si JOIN shop_snapshots s ON s.id = si.snapshot_id"
                   " WHERE si.item_id = %(item)s AND s.shop_id = %(shop)s ORDER BY si.snapshot_id DESC LIMIT 200",
                   {"item": item_id, "shop": shop_id})
    changes = rows(connection,
                   f"SELECT c.id, c.snapshot_id, c.previous_snapshot_id, c.detected_at, {_change_columns('c')}"
                   " FROM shop_changes c WHERE c.item_id = %(item)s AND c.shop_id = %(shop)s"
                   " ORDER BY c.detected_at DESC, c.id DESC LIMIT 200", {"item": item_id, "shop": shop_id})
    result = _clean(item)
    result["history"] = [_clean(record) for record in history]
    result["changes"] = [_clean(record) for record in changes]
    result["template_prices"] = (
        _template_prices(connection, item["template_id"], shop_id, 100) if item["template_id"] else [])
    return result


def _change_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in CHANGE_COLUMNS)


def _template_prices(connection, template_id: int, shop_id: int | None, limit: int, shop: str | None = None
                     ) -> list[dict]:
    condition = "AND s.shop_id = %(shop)s" if shop_id is not None else ""
    if shop is not None:
        condition += " AND sh.code = %(code)s"
    records = rows(connection,
                   "SELECT s.id AS snapshot_id, sh.code AS shop, s.started_at AS seen_at, count(*) AS offers,"
                   " sum(coalesce(si.quantity, 1)) AS units, min(si.price) AS min_price,"
                   " round(avg(si.price), 2) AS avg_price, max(si.price) AS max_price,"
                   " percentile_cont(0.5) WITHIN GROUP (ORDER BY si.price) AS median_price"
                   " FROM shop_snapshot_items si JOIN shop_snapshots s ON s.id = si.snapshot_id"
                   " JOIN shop_shops sh ON sh.id = s.shop_id"
                   f" WHERE si.template_id = %(template)s AND s.status IN ('complete', 'partial') {condition}"
                   " GROUP BY s.id, sh.code ORDER BY s.id DESC LIMIT %(limit)s",
                   {"template": template_id, "shop": shop_id, "code": shop, "limit": limit})
    return [_clean(record) for record in records]


def template_prices(connection, template_id: int, params: dict) -> dict:
    template = row(connection, "SELECT id, category, name, type, title FROM shop_templates WHERE id = %(id)s",
                   {"id": template_id})
    if template is None:
        raise ShopTemplateNotFound(f"template {template_id} not found", params={"template_id": template_id})
    return {**template, "prices": _template_prices(connection, template_id, None, params["limit"], params["shop"])}


# ---------------------------------------------------------------------------
# Snapshots, diffs and changes.


def snapshot_answer(record: dict) -> dict:
    return _clean(record)


def snapshots(connection, params: dict) -> dict:
    where = _Where()
    if params.get("shop"):
        where.add("sh.code = %(shop)s", shop=params["shop"])
    if params.get("status"):
        where.add("s.status = %(status)s", status=params["status"])
    base = f"FROM shop_snapshots s JOIN shop_shops sh ON sh.id = s.shop_id WHERE {where.sql()}"
    total = row(connection, f"SELECT count(*) AS n {base}", where.values)["n"]
    limit, offset = _page(params)
    records = rows(connection, f"SELECT {SNAPSHOT_COLUMNS} {base} ORDER BY s.id DESC LIMIT %(limit)s OFFSET %(offset)s",
                   {**where.values, "limit": limit, "offset": offset})
    return _paged([snapshot_answer(record) for record in records], total, params)


def get_snapshot(connection, snapshot_id: int) -> dict:
    record = row(connection, f"SELECT {SNAPSHOT_COLUMNS} FROM shop_snapshots s JOIN shop_shops sh ON sh.id = s.shop_id"
                             " WHERE s.id = %(id)s", {"id": snapshot_id})
    if record is None:
        raise ShopSnapshotNotFound(f"snapshot {snapshot_id} not found", params={"snapshot_id": snapshot_id})
    result = snapshot_answer(record)
    result["categories"] = [_clean(category) for category in rows(
        connection,
        "SELECT category, status, pages, items, groups, group_shortfall, malformed, error, finished_at"
        " FROM shop_snapshot_categories WHERE snapshot_id = %(id)s ORDER BY finished_at, category",
        {"id": snapshot_id})]
    return result


def _finished(connection, snapshot_id: int, name: str) -> dict:
    record = row(connection, "SELECT s.id, s.shop_id, s.status, s.started_at, sh.code AS shop FROM shop_snapshots s"
                             " JOIN shop_shops sh ON sh.id = s.shop_id WHERE s.id = %(id)s", {"id": snapshot_id})
    if record is None:
        raise ShopSnapshotNotFound(f"snapshot {snapshot_id} not found", params={"snapshot_id": snapshot_id})
    if record["status"] not in ("complete", "partial"):
        raise ValidationFailed(f"snapshot {snapshot_id} is {record['status']}", fields={name: "shop.snapshot_pair"})
    return record


def diff(connection, params: dict) -> dict:
    """Compare two finished snapshots of one shop: ``from`` and ``to``, by default the shop's last two."""
    if params.get("to") is not None:
        new = _finished(connection, params["to"], "to")
    else:
        if not params.get("shop"):
            raise ValidationFailed("shop or to is required", fields={"shop": "field.required"})
        latest = rows(connection,
                      "SELECT s.id FROM shop_snapshots s JOIN shop_shops sh ON sh.id = s.shop_id"
                      " WHERE sh.code = %(shop)s AND s.status IN ('complete', 'partial') ORDER BY s.id DESC LIMIT 2",
                      {"shop": params["shop"]})
        if len(latest) < 2 and params.get("from") is None:
            raise ValidationFailed("fewer than two finished snapshots", fields={"shop": "shop.too_few_snapshots"})
        new = _finished(connection, latest[0]["id"], "to") if latest else None
        if new is None:
            raise ValidationFailed("no finished snapshot", fields={"shop": "shop.too_few_snapshots"})
    if params.get("from") is not None:
        old = _finished(connection, params["from"], "from")
    else:
        previous = row(connection,
                       "SELECT id FROM shop_snapshots WHERE shop_id = %(shop)s AND id < %(id)s"
                       " AND status IN ('complete', 'partial') ORDER BY id DESC LIMIT 1",
                       {"shop": new["shop_id"], "id": new["id"]})
        if previous is None:
            raise ValidationFailed("no earlier finished snapshot", fields={"from": "shop.too_few_snapshots"})
        old = _finished(connection, previous["id"], "from")
    if old["shop_id"] != new["shop_id"] or old["id"] >= new["id"]:
        raise ValidationFailed("from and to do not make a pair", fields={"from": "shop.snapshot_pair"})
    if params.get("shop") and params["shop"] != new["shop"]:
        raise ValidationFailed("the snapshots are of another shop", fields={"shop": "shop.snapshot_pair"})

    where = "TRUE"
    values = {"old": old["id"], "new": new["id"]}
    if params.get("kind"):
        where = "d.kind = %(kind)s"
        values["kind"] = params["kind"]
    records = rows(connection, f"SELECT d.*, i.txt FROM ({DIFF_SQL}) AS d"
                               " LEFT JOIN shop_items i ON i.shop_id = %(shop)s AND i.item_id = d.item_id"
                               f" WHERE {where} ORDER BY d.kind, d.item_id",
                   {**values, "shop": new["shop_id"]})
    counts = {}
    for record in records:
        counts[record["kind"]] = counts.get(record["kind"], 0) + 1
    compared = rows(connection,
                    "SELECT a.category FROM shop_snapshot_categories a JOIN shop_snapshot_categories b"
                    " ON b.category = a.category AND b.snapshot_id = %(new)s AND b.status = 'complete'"
                    " WHERE a.snapshot_id = %(old)s AND a.status = 'complete' ORDER BY a.category", values)
    limit, offset = _page(params)
    page = [_clean(record) for record in records[offset:offset + limit]]
    return {
        "shop": new["shop"],
        "from": {"id": old["id"], "started_at": _iso(old["started_at"]), "status": old["status"]},
        "to": {"id": new["id"], "started_at": _iso(new["started_at"]), "status": new["status"]},
        "compared_categories": [record["category"] for record in compared],
        "counts": counts,
        **_paged(page, len(records), params),
    }


def changes(connection, params: dict) -> dict:
    where = _Where()
    since = params.get("since") or datetime.now(timezone.utc) - timedelta(days=1)
    where.add("c.detected_at >= %(since)s", since=since)
    if params.get("until") is not None:
        where.add("c.detected_at < %(until)s", until=params["until"])
    if params.get("shop"):
        where.add("sh.code = %(shop)s", shop=params["shop"])
    if params.get("kind"):
        where.add("c.kind = %(kind)s", kind=params["kind"])
    if params.get("category"):
        where.add("c.category = %(category)s", category=params["category"])
    base = (" FROM shop_changes c JOIN shop_shops sh ON sh.id = c.shop_id"
            " LEFT JOIN shop_items i ON i.shop_id = c.shop_id AND i.item_id = c.item_id"
            f" WHERE {where.sql()}")
    total = row(connection, "SELECT count(*) AS n" + base, where.values)["n"]
    limit, offset = _page(params)
    records = rows(connection,
                   "SELECT c.id, sh.code AS shop, c.snapshot_id, c.previous_snapshot_id, c.detected_at, i.txt,"
                   f" {_change_columns('c')}" + base
                   + " ORDER BY c.detected_at, c.id LIMIT %(limit)s OFFSET %(offset)s",
                   {**where.values, "limit": limit, "offset": offset})
    result = _paged([_clean(record) for record in records], total, params)
    result["since"] = since.isoformat()
    return result
