"""Parsing of shop pages: one ``<SH>`` reply into typed items and group headers.

A page is ``<SH c="..." s="..." p="..." m="..."><O .../>...</SH>``. An
``<O>`` with an ``id`` is one offer: a single item, or a stack when it also
has ``count``. An ``<O>`` with ``count`` and no ``id`` is a group header
that stands for ``count`` identical offers, which a request filtered with
``name:<name>,type:<type>`` lists.

Every attribute is read into a typed field. An attribute that cannot be
read leaves its field empty and is named in ``bad_attributes``; the item
is kept. Only an entry whose ``id`` is unusable is left out, because
nothing else identifies it, and it is counted as malformed.

The XML is untrusted, so the parser resolves no entities, loads no DTD, uses
no network, rejects a DOCTYPE and bounds size and nesting depth.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from lxml import etree


#: The largest page accepted, in bytes. The game's pages are a few kilobytes.
MAX_PAGE_BYTES = 4 * 1024 * 1024
#: SH, then O. O has no children in the game's pages, but one unknown level more is accepted.
MAX_DEPTH = 3
#: Entries per page beyond which a page is rejected.
MAX_ENTRIES = 10_000
#: Entries read between two calls of parse_page's ``pause``.
PAUSE_EVERY = 100

INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
#: Bounds that keep values inside their numeric columns: price numeric(16, 2),
#: weight numeric(12, 3), and piercing numeric(14, 4) after division by 100.
MAX_PRICE = Decimal("1e13")
MAX_WEIGHT = Decimal("1e8")
MAX_PIERCING_RAW = Decimal("1e11")
#: put_day bounds: 2000-01-01 to 2100-01-01.
_MIN_EPOCH, _MAX_EPOCH = 946_684_800, 4_102_444_800

_DAMAGE_RE = re.compile(r"([A-Z])(-?[0-9]{1,9})-(-?[0-9]{1,9})")
_SHOT_RE = re.compile(r"([0-9]{1,4})-([0-9]{1,6})")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_DECIMAL_RE = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
_REQUIREMENT_KEYS = {
    "level": "level", "str": "strength", "dex": "dexterity", "acc": "accuracy",
    "int": "intuition", "intel": "intelligence", "pow": "endurance",
}
REQUIREMENT_FIELDS = ("level", "strength", "dexterity", "accuracy", "intuition", "intelligence", "endurance", "gender")


class ShopPageError(ValueError):
    """The page is not a usable ``<SH>`` reply (not XML, wrong root, too large or too deep)."""


@dataclass
class Item:
    """One offer, with every attribute of the ``<O>`` element typed."""

    item_id: int
    txt: str = ""
    name: str | None = None
    type: str | None = None
    price: Decimal | None = None
    quantity: int | None = 1
    quality: int | None = None
    max_quality: int | None = None
    owner: str | None = None
    npc_stock: bool = False
    weight: Decimal | None = None
    damage: list | None = None
    protection: list | None = None
    caliber: str | None = None
    range: int | None = None
    grouping: int | None = None
    piercing: Decimal | None = None
    magazine: int | None = None
    reload_od: int | None = None
    skill: int | None = None
    attack_modes: list | None = None
    slots: str | None = None
    equip_od: int | None = None
    requirements: dict | None = None
    bonuses: dict | None = None
    build_in: list | None = None
    section: int | None = None
    level: int | None = None
    listed_at: datetime | None = None
    bad_attributes: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    """A group header: ``count`` identical offers listed by the filter ``name:<name>,type:<type>``."""

    name: str
    type: str
    count: int | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    @property
    def filter_text(self) -> str:
        return group_filter(self.name, self.type)


@dataclass
class Page:
    """A parsed page: what it echoes, its items and group headers, and entries left out."""

    category: str | None
    filter_text: str | None
    page: str | None
    items: list[Item] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    #: Entries that could not be kept, each with the reason.
    malformed: list[str] = field(default_factory=list)


def group_filter(name: str, type_code: str) -> str:
    """Return the ``s`` filter that lists one group's offers.

    The game separates the parts with ``,`` and ``:``, so a name holding
    either cannot be requested, and :func:`parse_page` reports such a group
    as malformed instead. XML escaping is the message builder's job.
    """
    return f"name:{name},type:{type_code}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_page(data: bytes, encoding: str = "utf-8", pause: Callable[[], None] | None = None) -> Page:
    """Parse the bytes of one ``<SH>`` reply. Raises :class:`ShopPageError` when the page is unusable.

    ``pause`` is called every PAUSE_EVERY entries, so that a caller on an
    event loop can let other work run while a large page is read.
    """
    if len(data) > MAX_PAGE_BYTES:
        raise ShopPageError(f"the page has {len(data)} bytes, over the {MAX_PAGE_BYTES}-byte limit")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise ShopPageError(f"the page is not valid {encoding} (byte {error.start})") from None
    # Earlier clients of this server delete 0x1F bytes, which XML forbids.
    text = text.replace("\x1f", "").replace("\x00", "").strip()
    if "<!DOCTYPE" in text.upper():
        raise ShopPageError("the page contains a DOCTYPE, which the game protocol never uses")
    try:
        root = etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as error:
        raise ShopPageError(f"the page is not well-formed XML: {error}") from None
    except ValueError:
        raise ShopPageError("the page starts with an XML encoding declaration") from None
    if root.tag != "SH":
        raise ShopPageError(f"the page's root element is <{root.tag}>, not <SH>")

    page = Page(root.get("c"), root.get("s"), root.get("p"))
    entries = 0
    for child in root:
        if not isinstance(child.tag, str):
            continue
        if _depth(child) > MAX_DEPTH - 1:
            raise ShopPageError(f"the page nests elements deeper than {MAX_DEPTH} levels")
        if child.tag != "O":
            page.malformed.append(f"unexpected element <{child.tag}>")
            continue
        entries += 1
        if entries > MAX_ENTRIES:
            raise ShopPageError(f"the page lists more than {MAX_ENTRIES} entries")
        if pause is not None and entries % PAUSE_EVERY == 0:
            pause()
        _read_entry(dict(child.attrib), page)
    return page


def _depth(element, limit: int = MAX_DEPTH) -> int:
    deepest = 1
    stack = [(element, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in node)
    return deepest


def _read_entry(attributes: dict, page: Page) -> None:
    if "id" not in attributes:
        if "count" not in attributes:
            page.malformed.append("an entry with neither id nor count")
            return
        name, type_code = attributes.get("name"), attributes.get("type")
        count = _int(attributes.get("count"))
        if not name or not type_code or any(char in name + type_code for char in ",:"):
            page.malformed.append(f"a group header without a usable name and type: {attributes.get('txt', '')!r}")
            return
        page.groups.append(Group(name, type_code, count if count is not None and count >= 0 else None))
        return
    item_id = _int(attributes["id"])
    if item_id is None or not 0 < item_id <= BIGINT_MAX:
        page.malformed.append(f"an entry with the unusable id {attributes['id'][:40]!r}")
        return
    page.items.append(read_item(item_id, attributes))


def read_item(item_id: int, attributes: dict) -> Item:
    """Build an :class:`Item` from an ``<O>`` element's attributes; bad values are flagged, never fatal."""
    item = Item(item_id=item_id, raw=dict(attributes))
    reader = _Reader(item, attributes)
    item.txt = attributes.get("txt", "")
    item.name = attributes.get("name") or None
    item.type = attributes.get("type") or None
    item.price = reader.amount("cost", MAX_PRICE)
    item.quality = reader.integer("quality")
    item.max_quality = reader.integer("maxquality")
    item.weight = reader.amount("massa", MAX_WEIGHT)
    item.damage = reader.ranges("damage")
    item.protection = reader.ranges("protect")
    item.caliber = attributes.get("calibre") or None
    item.range = reader.integer("range")
    item.grouping = reader.integer("grouping")
    piercing = reader.amount("piercing", MAX_PIERCING_RAW)
    item.piercing = piercing / 100 if piercing is not None else None
    item.magazine = reader.integer("max_count")
    if "count" in attributes:
        item.quantity = reader.integer("count", minimum=0)
    item.reload_od = reader.integer("rOD")
    item.skill = reader.integer("nskill")
    item.attack_modes = reader.attack_modes("shot")
    item.slots = attributes.get("st") or None
    item.equip_od = reader.integer("OD")
    item.requirements = reader.requirements("min")
    item.bonuses = reader.bonuses("up")
    if attributes.get("build_in"):
        item.build_in = [part.strip() for part in attributes["build_in"].split(",") if part.strip()]
    item.npc_stock = attributes.get("infinty") == "1"
    # NPC stock has no seller; none is invented for it.
    item.owner = attributes.get("owner") or None
    item.section = reader.integer("section")
    item.level = reader.integer("lvl")
    item.listed_at = reader.moment("put_day")
    return item


def _int(value) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if _INT_RE.fullmatch(text) else None


class _Reader:
    """Reads typed values out of an attribute dict, flagging the attributes it cannot read."""

    def __init__(self, item: Item, attributes: dict):
        self.item = item
        self.attributes = attributes

    def _flag(self, name: str) -> None:
        if name not in self.item.bad_attributes:
            self.item.bad_attributes.append(name)

    def _text(self, name: str) -> str | None:
        value = self.attributes.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def integer(self, name: str, minimum: int = -INT_MAX) -> int | None:
        text = self._text(name)
        if text is None:
            return None
        number = _int(text)
        if number is None or not minimum <= number <= INT_MAX:
            self._flag(name)
            return None
        return number

    def amount(self, name: str, limit: Decimal) -> Decimal | None:
        text = self._text(name)
        if text is None:
            return None
        try:
            number = Decimal(text) if _DECIMAL_RE.fullmatch(text) else None
        except InvalidOperation:
            number = None
        if number is None or not abs(number) < limit:
            self._flag(name)
            return None
        return number

    def ranges(self, name: str) -> list | None:
        text = self._text(name)
        if text is None:
            return None
        parts = []
        for part in text.split(","):
            match = _DAMAGE_RE.fullmatch(part.strip())
            if match:
                parts.append({"type": match.group(1), "min": int(match.group(2)), "max": int(match.group(3))})
            elif part.strip():
                self._flag(name)
        return parts

    def attack_modes(self, name: str) -> list | None:
        text = self._text(name)
        if text is None:
            return None
        modes = []
        for part in text.split(","):
            match = _SHOT_RE.fullmatch(part.strip())
            if match:
                modes.append({"mode": int(match.group(1)), "od": int(match.group(2))})
            elif part.strip():
                self._flag(name)
        return modes

    def requirements(self, name: str) -> dict | None:
        text = self._text(name)
        if text is None:
            return None
        result = dict.fromkeys(REQUIREMENT_FIELDS)
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("man!"):
                result["gender"] = "M" if part == "man!1" else "F"
                continue
            key, separator, value = part.partition("=")
            number = _int(value) if separator else None
            if number is None or abs(number) > INT_MAX:
                self._flag(name)
            elif key in _REQUIREMENT_KEYS:
                result[_REQUIREMENT_KEYS[key]] = number
            # Other keys are not known; they stay in raw.
        return result

    def bonuses(self, name: str) -> dict | None:
        text = self._text(name)
        if text is None:
            return None
        result = {}
        for part in text.split(","):
            key, separator, value = part.strip().partition("=")
            number = _int(value) if separator else None
            if not key or number is None or abs(number) > INT_MAX:
                if part.strip():
                    self._flag(name)
                continue
            result[key] = number
        return result

    def moment(self, name: str) -> datetime | None:
        text = self._text(name)
        if text is None:
            return None
        number = _int(text)
        if number is None or not _MIN_EPOCH <= number <= _MAX_EPOCH:
            self._flag(name)
            return None
        return datetime.fromtimestamp(number, tz=timezone.utc)
