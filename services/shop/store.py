"""Writing snapshots to PostgreSQL: shops, categories as they are read, and the changes when a snapshot ends.

Each category is written in its own short transaction as soon as it is
read, so a long snapshot never keeps one long transaction open, and its
progress can be read from any process.
"""

from datetime import datetime, timedelta, timezone
from logging import getLogger

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.shop.scrape import CategoryResult


_log = getLogger(__name__)

CHANGE_KINDS = ("added", "removed", "price_changed", "quantity_changed", "seller_changed", "durability_changed")
FINISHED = ("complete", "partial")

SNAPSHOT_COLUMNS = (
    "s.id, sh.code AS shop, s.trigger, s.status, s.started_at, s.updated_at, s.finished_at, s.categories_total,"
    " s.categories_done, s.categories_failed, s.current_category, s.pages, s.items, s.flagged, s.previous_id,"
    " s.changes, s.error"
)

# Changes between snapshots %(old)s and %(new)s, over the categories read to
# their end in both: an unread category must not look sold out or new.
DIFF_SQL = """
WITH compared AS (
    SELECT a.category FROM shop_snapshot_categories a
    JOIN shop_snapshot_categories b ON b.category = a.category AND b.snapshot_id = %(new)s AND b.status = 'complete'
    WHERE a.snapshot_id = %(old)s AND a.status = 'complete'
), o AS (
    SELECT * FROM shop_snapshot_items WHERE snapshot_id = %(old)s AND category IN (SELECT category FROM compared)
), n AS (
    SELECT * FROM shop_snapshot_items WHERE snapshot_id = %(new)s AND category IN (SELECT category FROM compared)
), j AS (
    SELECT coalesce(n.item_id, o.item_id) AS item_id, coalesce(n.category, o.category) AS category,
           coalesce(n.template_id, o.template_id) AS template_id,
           o.item_id IS NULL AS is_added, n.item_id IS NULL AS is_removed,
           o.price AS old_price, n.price AS new_price, o.quantity AS old_quantity, n.quantity AS new_quantity,
           o.quality AS old_quality, n.quality AS new_quality, o.owner AS old_owner, n.owner AS new_owner
    FROM o FULL JOIN n ON n.item_id = o.item_id
)
SELECT k.kind, j.item_id, j.category, j.template_id, j.old_price, j.new_price, j.old_quantity, j.new_quantity,
       j.old_quality, j.new_quality, j.old_owner, j.new_owner
FROM j CROSS JOIN LATERAL (VALUES
    ('added', j.is_added),
    ('removed', j.is_removed),
    ('price_changed', NOT j.is_added AND NOT j.is_removed AND j.old_price IS DISTINCT FROM j.new_price),
    ('quantity_changed', NOT j.is_added AND NOT j.is_removed AND j.old_quantity IS DISTINCT FROM j.new_quantity),
    ('seller_changed', NOT j.is_added AND NOT j.is_removed AND j.old_owner IS DISTINCT FROM j.new_owner),
    ('durability_changed', NOT j.is_added AND NOT j.is_removed AND j.old_quality IS DISTINCT FROM j.new_quality)
) AS k (kind, hit)
WHERE k.hit
"""
CHANGE_COLUMNS = ("kind", "item_id", "category", "template_id", "old_price", "new_price", "old_quantity",
                  "new_quantity", "old_quality", "new_quality", "old_owner", "new_owner")


def rows(connection, query: str, values=None) -> list[dict]:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, values or {})
        return cursor.fetchall()


def row(connection, query: str, values=None) -> dict | None:
    found = rows(connection, query, values)
    return found[0] if found else None


def sync_shops(connection, shops) -> dict[str, int]:
    """Insert or rename the configured shops and return their ids by code."""
    ids = {}
    for shop in shops:
        found = row(connection,
                    "INSERT INTO shop_shops (code, name) VALUES (%(code)s, %(name)s)"
                    " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    {"code": shop.code, "name": shop.name})
        ids[shop.code] = found["id"]
    return ids


def snapshot(connection, snapshot_id: int) -> dict | None:
    return row(connection, f"SELECT {SNAPSHOT_COLUMNS} FROM shop_snapshots s JOIN shop_shops sh ON sh.id = s.shop_id"
                           " WHERE s.id = %(id)s", {"id": snapshot_id})


def running_snapshot(connection, shop_id: int) -> dict | None:
    return row(connection, f"SELECT {SNAPSHOT_COLUMNS} FROM shop_snapshots s JOIN shop_shops sh ON sh.id = s.shop_id"
                           " WHERE s.shop_id = %(shop)s AND s.status = 'running'", {"shop": shop_id})


def create_snapshot(connection, shop_id: int, trigger: str, categories: int) -> int:
    """Insert a running snapshot. Raises psycopg.errors.UniqueViolation when the shop already has one."""
    return row(connection,
               "INSERT INTO shop_snapshots (shop_id, trigger, categories_total) VALUES (%(shop)s, %(trigger)s, %(n)s)"
               " RETURNING id", {"shop": shop_id, "trigger": trigger, "n": categories})["id"]


def fail_stale(connection, stale_after: float) -> list[int]:
    """Mark failed the running snapshots that no process has touched for ``stale_after`` seconds."""
    found = rows(connection,
                 "UPDATE shop_snapshots SET status = 'failed', finished_at = now(), current_category = NULL,"
                 " error = 'abandoned: the process that ran it stopped' WHERE status = 'running'"
                 " AND updated_at < now() - make_interval(secs => %(seconds)s) RETURNING id",
                 {"seconds": stale_after})
    return [found_row["id"] for found_row in found]


def touch(connection, snapshot_id: int, pages: int, category: str | None) -> None:
    connection.execute("UPDATE shop_snapshots SET updated_at = now(), pages = %(pages)s, current_category = %(c)s"
                       " WHERE id = %(id)s AND status = 'running'",
                       {"id": snapshot_id, "pages": pages, "c": category})


def last_snapshots(connection, shop_id: int, count: int) -> list[dict]:
    return rows(connection, "SELECT id, status, started_at, finished_at FROM shop_snapshots WHERE shop_id = %(shop)s"
                            " ORDER BY id DESC LIMIT %(n)s", {"shop": shop_id, "n": count})


def _template_ids(connection, category: str, items) -> dict[tuple, int]:
    keys = {}
    for item in items:
        if item.name and item.type:
            keys.setdefault((item.name, item.type), item.txt)
    ids = {}
    for (name, type_code), title in keys.items():
        found = row(connection,
                    "INSERT INTO shop_templates (category, name, type, title) VALUES (%(c)s, %(n)s, %(t)s, %(title)s)"
                    " ON CONFLICT (category, name, type) DO UPDATE SET title = EXCLUDED.title RETURNING id",
                    {"c": category, "n": name, "t": type_code, "title": title or None})
        ids[(name, type_code)] = found["id"]
    return ids


def _json(value):
    return Jsonb(value) if value is not None else None


def save_category(connection, snapshot_id: int, shop_id: int, result: CategoryResult, seen_at: datetime,
                  pages_total: int) -> None:
    """Write one category's items and outcome, in one transaction."""
    items = list(result.items.values())
    with connection.transaction():
        templates = _template_ids(connection, result.category, items)
        item_rows = []
        snapshot_rows = []
        for item in items:
            template_id = templates.get((item.name, item.type))
            item_rows.append({
                "shop": shop_id, "item": item.item_id, "template": template_id, "category": result.category,
                "txt": item.txt, "price": item.price, "quantity": item.quantity, "quality": item.quality,
                "max_quality": item.max_quality, "owner": item.owner, "npc": item.npc_stock, "weight": item.weight,
                "damage": _json(item.damage), "protection": _json(item.protection), "caliber": item.caliber,
                "range": item.range, "grouping": item.grouping, "piercing": item.piercing, "magazine": item.magazine,
                "reload_od": item.reload_od, "skill": item.skill, "modes": _json(item.attack_modes),
                "slots": item.slots, "equip_od": item.equip_od, "requirements": _json(item.requirements),
                "bonuses": _json(item.bonuses), "build_in": item.build_in, "section": item.section,
                "level": item.level, "listed_at": item.listed_at, "bad": item.bad_attributes, "raw": Jsonb(item.raw),
                "snapshot": snapshot_id, "seen": seen_at,
            })
            snapshot_rows.append((snapshot_id, item.item_id, result.category, template_id, item.price, item.quantity,
                                  item.quality, item.max_quality, item.owner, item.npc_stock))
        with connection.cursor() as cursor:
            if item_rows:
                cursor.executemany(
                    "INSERT INTO shop_items (shop_id, item_id, template_id, category, txt, price, quantity, quality,"
                    " max_quality, owner, npc_stock, weight, damage, protection, caliber, range, grouping, piercing,"
                    " magazine, reload_od, skill, attack_modes, slots, equip_od, requirements, bonuses, build_in,"
                    " section, level, listed_at, bad_attributes, raw, first_snapshot_id, last_snapshot_id,"
                    " first_seen_at, last_seen_at)"
                    " VALUES (%(shop)s, %(item)s, %(template)s, %(category)s, %(txt)s, %(price)s, %(quantity)s,"
                    " %(quality)s, %(max_quality)s, %(owner)s, %(npc)s, %(weight)s, %(damage)s, %(protection)s,"
                    " %(caliber)s, %(range)s, %(grouping)s, %(piercing)s, %(magazine)s, %(reload_od)s, %(skill)s,"
                    " %(modes)s, %(slots)s, %(equip_od)s, %(requirements)s, %(bonuses)s, %(build_in)s, %(section)s,"
                    " %(level)s, %(listed_at)s, %(bad)s, %(raw)s, %(snapshot)s, %(snapshot)s, %(seen)s, %(seen)s)"
                    " ON CONFLICT (shop_id, item_id) DO UPDATE SET template_id = EXCLUDED.template_id,"
                    " category = EXCLUDED.category, txt = EXCLUDED.txt, price = EXCLUDED.price,"
                    " quantity = EXCLUDED.quantity, quality = EXCLUDED.quality, max_quality = EXCLUDED.max_quality,"
                    " owner = EXCLUDED.owner, npc_stock = EXCLUDED.npc_stock, weight = EXCLUDED.weight,"
                    " damage = EXCLUDED.damage, protection = EXCLUDED.protection, caliber = EXCLUDED.caliber,"
                    " range = EXCLUDED.range, grouping = EXCLUDED.grouping, piercing = EXCLUDED.piercing,"
                    " magazine = EXCLUDED.magazine, reload_od = EXCLUDED.reload_od, skill = EXCLUDED.skill,"
                    " attack_modes = EXCLUDED.attack_modes, slots = EXCLUDED.slots, equip_od = EXCLUDED.equip_od,"
                    " requirements = EXCLUDED.requirements, bonuses = EXCLUDED.bonuses,"
                    " build_in = EXCLUDED.build_in, section = EXCLUDED.section, level = EXCLUDED.level,"
                    " listed_at = EXCLUDED.listed_at, bad_attributes = EXCLUDED.bad_attributes, raw = EXCLUDED.raw,"
                    " last_snapshot_id = EXCLUDED.last_snapshot_id, last_seen_at = EXCLUDED.last_seen_at,"
                    " gone_at = NULL",
                    item_rows,
                )
                cursor.executemany(
                    "INSERT INTO shop_snapshot_items (snapshot_id, item_id, category, template_id, price, quantity,"
                    " quality, max_quality, owner, npc_stock) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    snapshot_rows,
                )
            cursor.execute(
                "INSERT INTO shop_snapshot_categories (snapshot_id, category, status, pages, items, groups,"
                " group_shortfall, malformed, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (snapshot_id, result.category, "complete" if result.complete else "failed", result.pages, len(items),
                 result.groups, result.group_shortfall, result.malformed, result.error),
            )
            cursor.execute(
                "UPDATE shop_snapshots SET updated_at = now(), pages = %(pages)s, items = items + %(items)s,"
                " flagged = flagged + %(flagged)s, categories_done = categories_done + 1,"
                " categories_failed = categories_failed + %(failed)s WHERE id = %(id)s",
                {"id": snapshot_id, "pages": pages_total, "items": len(items),
                 "flagged": sum(1 for item in items if item.bad_attributes), "failed": 0 if result.complete else 1},
            )


def finish_snapshot(connection, snapshot_id: int, shop_id: int, status: str, error: str | None) -> dict:
    """End a snapshot: store its changes against the previous finished one, then its status. Returns the counts."""
    with connection.transaction():
        current = row(connection, "SELECT started_at FROM shop_snapshots WHERE id = %(id)s FOR UPDATE",
                      {"id": snapshot_id})
        previous = None
        counts = dict.fromkeys(CHANGE_KINDS, 0)
        if status in FINISHED:
            previous = row(connection,
                           "SELECT id FROM shop_snapshots WHERE shop_id = %(shop)s AND id < %(id)s"
                           " AND status IN ('complete', 'partial') ORDER BY id DESC LIMIT 1",
                           {"shop": shop_id, "id": snapshot_id})
        if previous is not None:
            values = {"old": previous["id"], "new": snapshot_id, "shop": shop_id, "at": current["started_at"]}
            for found in rows(connection,
                              "INSERT INTO shop_changes (snapshot_id, previous_snapshot_id, shop_id, item_id,"
                              " template_id, category, kind, old_price, new_price, old_quantity, new_quantity,"
                              " old_quality, new_quality, old_owner, new_owner, detected_at)"
                              " SELECT %(new)s, %(old)s, %(shop)s, d.item_id, d.template_id, d.category, d.kind,"
                              " d.old_price, d.new_price, d.old_quantity, d.new_quantity, d.old_quality,"
                              " d.new_quality, d.old_owner, d.new_owner, %(at)s"
                              f" FROM ({DIFF_SQL}) AS d RETURNING kind, item_id", values):
                counts[found["kind"]] += 1
            connection.execute(
                "UPDATE shop_items i SET gone_at = %(at)s FROM shop_changes c WHERE c.snapshot_id = %(new)s"
                " AND c.kind = 'removed' AND i.shop_id = c.shop_id AND i.item_id = c.item_id", values)
        connection.execute(
            "UPDATE shop_snapshots SET status = %(status)s, finished_at = now(), updated_at = now(),"
            " current_category = NULL, error = %(error)s, previous_id = %(previous)s, changes = %(changes)s"
            " WHERE id = %(id)s",
            {"id": snapshot_id, "status": status, "error": error,
             "previous": previous["id"] if previous else None,
             "changes": Jsonb(counts) if previous is not None else None},
        )
    return counts


def prune(connection, retention_days: int) -> int:
    """Delete finished snapshots older than ``retention_days`` (their items and changes go with them)."""
    if retention_days <= 0:
        return 0
    cutoff = datetime.now(timezone.utc) - timedelta(days=retention_days)
    with connection.transaction():
        # The newest finished snapshot of each shop stays, so the next one has something to compare with.
        deleted = rows(connection, "DELETE FROM shop_snapshots WHERE status <> 'running' AND started_at < %(cutoff)s"
                                   " AND id NOT IN (SELECT max(id) FROM shop_snapshots"
                                   " WHERE status IN ('complete', 'partial') GROUP BY shop_id) RETURNING id",
                       {"cutoff": cutoff})
    if deleted:
        _log.info("deleted %d shop snapshots older than %d days", len(deleted), retention_days)
    return len(deleted)
