"""The ``shop`` service: point-in-time snapshots of the in-game shops, their diffs, and a read API over them.

Each configured shop with a bot account in the shop bots secret is read on
a timer, one snapshot per shop at a time (:mod:`services.shop.snapshots`).
Read methods take the parameters of one query as a mapping (the query
string of the gateway's route, or JSON values over RPC), check them with
:mod:`services.battles.params` and query PostgreSQL. List answers are
pages: ``{"items", "total", "page", "limit", "has_more"}``.
"""

from logging import getLogger

import psycopg
from nameko.rpc import rpc
from psycopg_pool import PoolTimeout

from services.battles import params as p
from services.battles.params import Param
from services.common.errors import ServiceError, ServiceUnavailable, ShopNotFound, ValidationFailed
from services.common.postgres import Postgres
from services.common.request_context import RequestContext
from services.common.timer import config_timer
from services.shop import queries
from services.shop.categories import CATEGORY_CODES, describe
from services.shop.settings import CONFIG_SECTION
from services.shop.snapshots import Snapshotter
from services.shop.store import CHANGE_KINDS


_log = getLogger(__name__)

SHOP = {"shop": Param("text", max_length=32)}
KIND = {"kind": Param("choice", choices=CHANGE_KINDS)}
CATEGORY = {"category": Param("choice", choices=CATEGORY_CODES)}
MAX_PRICE = 1e12
SEARCH = {
    **p.PAGE, **SHOP, **CATEGORY,
    "name": Param("text", max_length=100),
    "type": Param("text", max_length=32),
    "seller": Param("text", max_length=64),
    "template_id": Param("integer", minimum=1, maximum=2**31 - 1),
    "min_price": Param("number", minimum=0, maximum=MAX_PRICE),
    "max_price": Param("number", minimum=0, maximum=MAX_PRICE),
    "npc_stock": Param("boolean"),
    "sort": Param("choice", default="price", choices=tuple(queries.SORTS)),
}
ITEM = {**SHOP}
PRICES = {**SHOP, "limit": Param("integer", default=100, minimum=1, maximum=1000)}
SNAPSHOTS = {**p.PAGE, **SHOP, "status": Param("choice", choices=("running", "complete", "partial", "failed"))}
DIFF = {
    **p.PAGE, **SHOP, **KIND,
    "from": Param("integer", minimum=1, maximum=2**63 - 1),
    "to": Param("integer", minimum=1, maximum=2**63 - 1),
}
CHANGES = {**p.PAGE, **p.PERIOD, **SHOP, **KIND, **CATEGORY}
FRESHNESS = {**SHOP}

EXPECTED = (ServiceError,)


def _positive_id(value, name: str) -> int:
    checked = p.parse({name: value}, {name: Param("integer", minimum=1, maximum=2**63 - 1)})
    if checked[name] is None:
        raise ValidationFailed(f"{name} is required", fields={name: "field.required"})
    return checked[name]


class ShopService:
    """Tracks the in-game shops: snapshots on a timer and on request, diffs, changes, prices and freshness.

    Config section ``SHOP`` (see ``services/config.yml``): ``dsn``, ``shops``
    (code=name pairs), ``bots_secret`` (the secret with ``shop=login:KEY``
    entries), the game server's address, ``interval`` between scheduled
    snapshots, ``tick`` of the timer, timeouts, paging limits, backoff and
    ``retention_days``.
    """

    name = "shop"

    db = Postgres(CONFIG_SECTION)
    snapshotter = Snapshotter()
    context = RequestContext()

    @config_timer(CONFIG_SECTION, "tick", default=10)
    def take_due_snapshots(self):
        self.snapshotter.tick()

    def _query(self, query, *args):
        name = getattr(query, "__name__", "query")
        try:
            with self.db.connection() as connection:
                connection.read_only = True
                return query(connection, *args)
        except PoolTimeout as error:
            _log.error("%s: no database connection: %s", name, error)
            raise ServiceUnavailable(f"the shop database did not respond: {error}") from None
        except psycopg.errors.QueryCanceled:
            _log.error("%s: the query ran past the statement timeout", name)
            raise ServiceUnavailable("the query took too long") from None
        except psycopg.OperationalError as error:
            _log.error("%s: the database failed: %s", name, error)
            raise ServiceUnavailable(f"the shop database failed: {error}") from None

    def _parse(self, params, specs) -> dict:
        checked = p.parse(params, specs)
        shop = checked.get("shop")
        if shop is not None and self.snapshotter.settings.shop(shop) is None:
            raise ShopNotFound(f"no shop {shop!r} is configured", params={"shop": shop})
        return checked

    def _configured(self) -> list[dict]:
        return [{"code": shop.code, "name": shop.name, "enabled": shop.enabled}
                for shop in self.snapshotter.settings.shops]

    @rpc
    def ready(self):
        """Return ``{"postgres": bool}``."""
        try:
            with self.db.connection(timeout=2) as connection:
                connection.execute("SELECT 1")
            return {"postgres": True}
        except (PoolTimeout, psycopg.Error):
            return {"postgres": False}

    @rpc(expected_exceptions=EXPECTED)
    def shops(self):
        """List the configured shops: code, name, enabled (has a bot), the last finished and the running snapshot."""
        return self._query(queries.shops, self._configured())

    @rpc(expected_exceptions=EXPECTED)
    def categories(self):
        """List the categories read, in reading order, with Russian and English names and their group."""
        return {"items": describe()}

    @rpc(expected_exceptions=EXPECTED)
    def search_items(self, params=None):
        """Search the items on sale now by name, type, category, price range, seller, template and shop."""
        checked = self._parse(params, SEARCH)
        if checked["min_price"] is not None and checked["max_price"] is not None \
                and checked["max_price"] < checked["min_price"]:
            raise ValidationFailed("max_price is below min_price", fields={"max_price": "shop.price_order"})
        return self._query(queries.search_items, checked)

    @rpc(expected_exceptions=EXPECTED)
    def get_item(self, item_id, params=None):
        """Return one item: its typed attributes, its state in each snapshot, its changes and its template's prices.

        Raises ShopItemNotFound, and ValidationFailed (field ``shop``) when the
        id is in several shops and ``shop`` is not given.
        """
        return self._query(queries.get_item, _positive_id(item_id, "item_id"), self._parse(params, ITEM))

    @rpc(expected_exceptions=EXPECTED)
    def template_prices(self, template_id, params=None):
        """Return a template's price statistics per snapshot (offers, units, min, median, mean, max), newest first."""
        template_id = _positive_id(template_id, "template_id")
        return self._query(queries.template_prices, template_id, self._parse(params, PRICES))

    @rpc(expected_exceptions=EXPECTED)
    def snapshots(self, params=None):
        """List snapshots, newest first, optionally of one shop or status."""
        return self._query(queries.snapshots, self._parse(params, SNAPSHOTS))

    @rpc(expected_exceptions=EXPECTED)
    def get_snapshot(self, snapshot_id):
        """Return one snapshot with the outcome of each category read so far (its progress while running)."""
        return self._query(queries.get_snapshot, _positive_id(snapshot_id, "snapshot_id"))

    @rpc(expected_exceptions=EXPECTED)
    def diff(self, params=None):
        """Compare two finished snapshots of a shop (``from``, ``to``; by default its last two).

        Only categories read to their end in both are compared; the answer
        names them in ``compared_categories``.
        """
        return self._query(queries.diff, self._parse(params, DIFF))

    @rpc(expected_exceptions=EXPECTED)
    def changes(self, params=None):
        """Return the changes detected since a time (default: the last 24 hours), oldest first."""
        return self._query(queries.changes, self._parse(params, CHANGES))

    @rpc(expected_exceptions=EXPECTED)
    def freshness(self, params=None):
        """Per shop and category: when it was last read to its end, its age and whether it is stale."""
        checked = self._parse(params, FRESHNESS)
        return self._query(queries.freshness, checked, self._configured(), CATEGORY_CODES,
                           self.snapshotter.settings.interval)

    @rpc(expected_exceptions=EXPECTED)
    def start_snapshot(self, shop):
        """Start a snapshot of ``shop`` and return at once: ``{"snapshot": {...}, "joined": bool}``.

        When one is already running for the shop, it is returned with
        ``joined`` true. Raises ShopNotFound and ShopDisabled (no bot account).
        """
        code = self._parse({"shop": shop}, SHOP)["shop"]
        if code is None:
            raise ValidationFailed("shop is required", fields={"shop": "field.required"})
        try:
            snapshot, joined = self.snapshotter.start_snapshot(code, "rpc")
        except (PoolTimeout, psycopg.OperationalError) as error:
            _log.error("start_snapshot: the database failed: %s", error)
            raise ServiceUnavailable(f"the shop database failed: {error}") from None
        return {"snapshot": queries.snapshot_answer(snapshot), "joined": joined}
