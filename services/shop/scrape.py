"""Reading one shop category page by page, with its groups expanded.

The game server answers a page number past the end with the last page
again (or with an empty page), so a listing is read until a page is empty
or holds nothing new. Group headers are collected from the listing, each
group is expanded once with its filter, and every offer is kept once by
its id. A page that fails is asked for again a few times; a category
whose page keeps failing is reported as failed with what it had read, so
that no one mistakes its unread items for sold ones.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from logging import getLogger

from services.game.client import GameConnectFailed, GameLoginFailed
from services.game.framing import GameError
from services.shop.pages import Group, Item, Page, ShopPageError, parse_page


_log = getLogger(__name__)

#: fetch(category, filter_text, page) returns the bytes of one ``<SH>`` reply.
Fetch = Callable[[str, str, int], bytes]


class SessionLost(Exception):
    """The bot cannot reach or log in to the game server; the rest of the snapshot would fail too."""


class Stopped(Exception):
    """The snapshot was asked to stop."""


@dataclass(frozen=True)
class ScrapeSettings:
    """Paging limits and pacing; times in seconds."""

    #: Pages read per listing at most; a listing that has not repeated by then fails.
    max_pages: int = 500
    #: Requests per page at most, the first one included.
    page_attempts: int = 3
    retry_delay: float = 1.0
    #: Pause between two page requests, to spare the game server.
    page_delay: float = 0.2
    encoding: str = "utf-8"


@dataclass
class CategoryResult:
    """The result of reading one category: its items by id, and how the read went."""

    category: str
    items: dict[int, Item] = field(default_factory=dict)
    complete: bool = False
    pages: int = 0
    groups: int = 0
    group_shortfall: int = 0
    malformed: int = 0
    error: str | None = None


class CategoryReader:
    """Reads one category through ``fetch``; see the module documentation.

    ``stopped`` is polled between pages, and when it returns true the read
    raises :class:`Stopped`. ``on_page`` is called after every page, and
    ``pause`` while a page is parsed (see :func:`parse_page`).
    """

    def __init__(self, fetch: Fetch, settings: ScrapeSettings, *, stopped: Callable[[], bool] = lambda: False,
                 on_page: Callable[[], None] = lambda: None, sleep: Callable[[float], None] = time.sleep,
                 pause: Callable[[], None] | None = None):
        self.fetch = fetch
        self.pause = pause
        self.settings = settings
        self.stopped = stopped
        self.on_page = on_page
        self.sleep = sleep
        self._requests = 0

    def read(self, category: str) -> CategoryResult:
        """Read the listing and every group of ``category``; raise SessionLost or Stopped, nothing else."""
        result = CategoryResult(category)
        groups: dict[tuple[str, str], Group] = {}
        try:
            self._read_listing(category, "", result, groups)
            for group in groups.values():
                self._read_listing(category, group.filter_text, result, None)
                found = sum(1 for item in result.items.values() if (item.name, item.type) == group.key)
                if group.count is not None and found < group.count:
                    result.group_shortfall += group.count - found
                    _log.warning("shop category %s: group %s/%s announced %d offers, %d found",
                                 category, group.name, group.type, group.count, found)
            result.groups = len(groups)
            result.complete = True
        except _CategoryFailed as error:
            result.groups = len(groups)
            result.error = str(error)
            _log.warning("shop category %s failed after %d pages: %s", category, result.pages, error)
        return result

    def _read_listing(self, category: str, filter_text: str, result: CategoryResult, groups: dict | None) -> None:
        seen: set[int] = set()
        seen_groups: set[tuple[str, str]] = set()
        for number in range(self.settings.max_pages):
            page = self._page(category, filter_text, number)
            result.pages += 1
            result.malformed += len(page.malformed)
            for reason in page.malformed:
                _log.warning("shop category %s page %d: left out %s", category, number, reason)
            ids = [item.item_id for item in page.items]
            new_groups = [group for group in page.groups if group.key not in seen_groups]
            if groups is not None:
                for group in new_groups:
                    groups.setdefault(group.key, group)
            seen_groups.update(group.key for group in page.groups)
            if not ids and not new_groups:
                return  # an empty page, or a groups-only page seen before
            if ids and all(item_id in seen for item_id in ids) and not new_groups:
                return  # the last page, repeated
            for item in page.items:
                seen.add(item.item_id)
                # An offer listed twice (in the listing and in its group) is kept once.
                result.items.setdefault(item.item_id, item)
        raise _CategoryFailed(
            f"the listing {filter_text or '(all)'} did not end within {self.settings.max_pages} pages")

    def _page(self, category: str, filter_text: str, number: int) -> Page:
        last_error = None
        for attempt in range(1, self.settings.page_attempts + 1):
            if self.stopped():
                raise Stopped()
            if self._requests and self.settings.page_delay:
                self.sleep(self.settings.page_delay)
            if attempt > 1:
                self.sleep(self.settings.retry_delay * 2 ** (attempt - 2))
            self._requests += 1
            try:
                data = self.fetch(category, filter_text, number)
                page = parse_page(data, self.settings.encoding, self.pause)
                if page.filter_text is not None and page.filter_text != filter_text:
                    raise ShopPageError(f"the reply is for the filter {page.filter_text!r}, not {filter_text!r}")
                if page.category is not None and page.category != category:
                    raise ShopPageError(f"the reply is for category {page.category!r}, not {category!r}")
                self.on_page()
                return page
            except (GameLoginFailed, GameConnectFailed) as error:
                raise SessionLost(str(error)) from error
            except (GameError, ShopPageError) as error:
                last_error = error
                _log.warning("shop category %s page %d%s: %s (attempt %d of %d)", category, number,
                             f" filter {filter_text}" if filter_text else "", error, attempt,
                             self.settings.page_attempts)
        raise _CategoryFailed(f"page {number}{' of ' + filter_text if filter_text else ''}: {last_error}")


class _CategoryFailed(Exception):
    pass
