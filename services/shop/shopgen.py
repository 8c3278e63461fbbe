"""Realistic shop pages for the game-server simulator, for tests and the demo.

:func:`generate_catalog` makes offers per category (weapons with damage and
attack modes, armour with protection, ammunition stacks, NPC stock without
a seller, identical offers that the listing collapses into groups), and
:func:`write_pages` lays them out as the simulator serves them:
``<category>/<page>.xml`` for a listing and
``<category>/<quoted filter>/<page>.xml`` for a group's offers, with the
last page written once more under the next number, as the game server
repeats it. Tests change the catalog and write it again between snapshots.

As a command, ``tzr-shopgen DIR`` (or ``python -m services.shop.shopgen
DIR``) fills an empty folder and leaves a non-empty one alone unless
``--force`` is given. ``--day N`` writes the same shop after N days of
trading (:func:`drift`), so that the next snapshot finds changes.
"""

import argparse
import random
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

from services.game.messages import escape_attribute
from services.shop.categories import CATEGORY_CODES
from services.shop.pages import group_filter


PAGE_SIZE = 8
#: Offers of one template from which the listing shows a group header instead.
GROUP_MIN = 3
FIRST_ITEM_ID = 880_000_001
_START_DAY = 1_764_547_200  # 2025-12-01

_SELLERS = ("Странник", "Trader42", "Ёжик", "Sova", "Мародёр", "Inga", "Doc Holiday", "Контрабандист")
_DAMAGE_TYPES = "SEBPO"
# (category, template code, type code, display name, base price)
_TEMPLATES = (
    ("k", "k1-knife", "1.1", "Нож выживальщика", 40), ("k", "k2-machete", "1.2", "Мачете", 95),
    ("p", "p1-pm", "1.5", "Пистолет Макарова", 180), ("p", "p2-deagle", "1.5", "Desert Eagle", 640),
    ("v", "v1-ak74", "1.7", "АК-74", 1200), ("v", "v2-svd", "1.8", "СВД", 2100),
    ("w", "w1-pkm", "1.9", "Пулемёт ПКМ", 3900),
    ("e", "e1-blaster", "1.10", "Бластер", 2700),
    ("g", "g1-grenade", "1.12", "Граната Ф-1", 60),
    ("a", "a9-9mm", "2.5", "Патроны 9 мм", 2), ("a", "a7-762", "2.6", "Патроны 7.62 мм", 4),
    ("i", "i1-cell", "2.9", "Энергоячейка", 3),
    ("h", "h1-beret", "3.1", "Берет", 70), ("h", "h2-helmet", "3.2", "Шлем пехотинца", 300),
    ("c", "c1-vest", "3.5", "Бронежилет", 650),
    ("t", "t1-pants", "3.7", "Штаны разведчика", 210),
    ("b", "b1-boots", "3.9", "Берцы", 150),
    ("q", "q1-kit", "3.12", "Комплект штурмовика", 4800),
    ("d", "d1-medkit", "5.1", "Аптечка", 25), ("d", "d2-stim", "5.2", "Стимулятор", 80),
    ("s", "s1-metal", "6.1", "Металлолом", 5), ("s", "s2-crystal", "6.2", "Кристаллы", 30),
    ("z", "z1-map", "9.1", "Карта пустошей", 15),
)


def generate_catalog(seed: int = 1, offers: int = 60) -> dict[str, list[dict]]:
    """Return about ``offers`` offers as ``{category: [attribute dict, ...]}``, the same for the same seed.

    Attribute values are strings, as in the game's XML. Ids are unique and
    ascending from FIRST_ITEM_ID.
    """
    rng = random.Random(seed)
    catalog: dict[str, list[dict]] = {code: [] for code in CATEGORY_CODES}
    next_id = FIRST_ITEM_ID
    for number in range(offers):
        category, name, type_code, title, base = _TEMPLATES[number % len(_TEMPLATES)]
        # Ammunition and kits come in runs of identical offers, which the listing collapses into groups.
        copies = 3 if category in ("a", "q") and number < len(_TEMPLATES) else 1
        for _ in range(copies):
            catalog[category].append(_offer(rng, next_id, category, name, type_code, title, base))
            next_id += 1
    return catalog


def _offer(rng: random.Random, item_id: int, category: str, name: str, type_code: str, title: str,
           base: int) -> dict:
    offer = {
        "id": str(item_id), "txt": title, "name": name, "type": type_code,
        "cost": f"{base * rng.uniform(0.8, 1.3):.2f}",
        "massa": f"{rng.uniform(0.1, 6):.1f}", "lvl": str(rng.randint(0, 12)),
        "put_day": str(_START_DAY + rng.randint(0, 86_400 * 3)),
    }
    if rng.random() < 0.2:
        offer["infinty"] = "1"
    else:
        offer["owner"] = rng.choice(_SELLERS)
    if category in ("a", "i", "s", "d"):
        offer["count"] = str(rng.choice((10, 25, 50, 100, 250)))
    if category in ("k", "p", "v", "w", "e", "g", "h", "c", "t", "b", "q"):
        top = rng.randint(60, 120)
        offer.update(quality=str(rng.randint(top // 2, top)), maxquality=str(top))
    if category in ("k", "p", "v", "w", "e", "g"):
        low = rng.randint(2, 20)
        offer.update(
            damage=f"{rng.choice(_DAMAGE_TYPES)}{low}-{low + rng.randint(2, 15)}",
            range=str(rng.randint(1, 30)), grouping=str(rng.randint(1, 9)), piercing=str(rng.randint(0, 2500)),
            shot=",".join(f"{mode}-{rng.randint(2, 9)}" for mode in sorted(rng.sample((1, 2, 3, 4), 2))),
            st=rng.choice(("G,H", "GH")), OD=str(rng.randint(1, 4)), nskill=str(rng.randint(1, 6)),
            min=f"level={rng.randint(1, 15)},str={rng.randint(5, 40)}" + (",man!1" if rng.random() < 0.1 else ""),
        )
        if category in ("p", "v", "w"):
            offer.update(calibre=rng.choice(("9", "7.62", "5.45")), max_count=str(rng.choice((8, 30, 100))),
                         rOD=str(rng.randint(1, 4)))
    if category in ("h", "c", "t", "b", "q"):
        offer.update(protect=f"S{rng.randint(1, 10)}-{rng.randint(11, 30)},E{rng.randint(0, 5)}-{rng.randint(6, 12)}",
                     up=f"str={rng.randint(1, 3)}", OD="2")
    if category == "q":
        offer["build_in"] = "300.1,300.4"
    return offer


def drift(catalog: dict[str, list[dict]], seed: int, share: float = 0.1) -> dict[str, int]:
    """Change ``catalog`` in place as a day of trading would, and return how many offers each change touched.

    About ``share`` of the offers each get a new price, seller, quantity or
    durability, as many are sold (removed), and as many new ones are listed.
    """
    rng = random.Random(seed)
    counts = dict.fromkeys(("price", "seller", "quantity", "durability", "removed", "added"), 0)
    everything = [offer for offers in catalog.values() for offer in offers]
    next_id = max((int(offer["id"]) for offer in everything), default=FIRST_ITEM_ID - 1) + 1
    picks = max(1, round(len(everything) * share))
    for offer in rng.sample(everything, min(picks, len(everything))):
        change = rng.choice(("price", "seller", "quantity", "durability"))
        if change == "price":
            offer["cost"] = f"{float(offer['cost']) * rng.uniform(0.7, 1.3):.2f}"
        elif change == "seller" and "owner" in offer:
            offer["owner"] = rng.choice([seller for seller in _SELLERS if seller != offer["owner"]])
        elif change == "quantity" and "count" in offer:
            offer["count"] = str(max(1, int(offer["count"]) + rng.randint(-20, 20)))
        elif change == "durability" and "quality" in offer:
            offer["quality"] = str(max(1, int(offer["quality"]) - rng.randint(1, 10)))
        else:
            continue
        counts[change] += 1
    for _ in range(picks):
        offers = rng.choice([offers for offers in catalog.values() if offers])
        offers.remove(rng.choice(offers))
        counts["removed"] += 1
    for _ in range(picks):
        category, name, type_code, title, base = rng.choice(_TEMPLATES)
        catalog[category].append(_offer(rng, next_id, category, name, type_code, title, base))
        next_id += 1
        counts["added"] += 1
    return counts


def _element(attributes: dict) -> str:
    parts = [f'{name}="{escape_attribute(name, value)}"' for name, value in attributes.items()]
    return "<O " + " ".join(parts) + "/>"


def _page(category: str, filter_text: str, number: int, entries: list[str]) -> str:
    head = (f'<SH c="{escape_attribute("c", category)}" s="{escape_attribute("s", filter_text)}"'
            f' p="{number}" m="{len(entries)}">')
    return head + "".join(entries) + "</SH>"


def filter_folder(filter_text: str) -> str:
    """Return the folder name under which the simulator looks for a filtered listing."""
    return quote(filter_text, safe="")


def _write_listing(folder: Path, category: str, filter_text: str, entries: list[str], page_size: int,
                   repeat_last: bool) -> int:
    pages = [entries[start:start + page_size] for start in range(0, len(entries), page_size)]
    if repeat_last and pages:
        pages.append(pages[-1])
    folder.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages):
        (folder / f"{number}.xml").write_text(_page(category, filter_text, number, page), encoding="utf-8")
    return len(pages)


def write_pages(root: Path, catalog: dict[str, list[dict]], *, page_size: int = PAGE_SIZE,
                group_min: int = GROUP_MIN, repeat_last: bool = True) -> int:
    """Write ``catalog`` as shop pages under ``root``, replacing its category folders; return the pages written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = 0
    for category, offers in catalog.items():
        folder = root / category
        if folder.exists():
            shutil.rmtree(folder)
        if not offers:
            continue
        by_template: dict[tuple, list[dict]] = {}
        for offer in offers:
            by_template.setdefault((offer.get("name"), offer.get("type")), []).append(offer)
        entries = []
        grouped = set()
        for offer in offers:
            key = (offer.get("name"), offer.get("type"))
            members = by_template[key]
            if len(members) >= group_min and key[0] and key[1]:
                if key not in grouped:
                    grouped.add(key)
                    entries.append(_element({"txt": offer.get("txt", ""), "name": key[0], "type": key[1],
                                             "count": str(len(members))}))
                continue
            entries.append(_element(offer))
        written += _write_listing(folder, category, "", entries, page_size, repeat_last)
        for name, type_code in grouped:
            filter_text = group_filter(name, type_code)
            members = [_element(offer) for offer in by_template[(name, type_code)]]
            written += _write_listing(folder / filter_folder(filter_text), category, filter_text, members,
                                      page_size, repeat_last)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tzr-shopgen", description="Write shop pages for the game-server simulator.")
    parser.add_argument("folder", type=Path, help="the folder to fill (the simulator's --shop)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--offers", type=int, default=60, help="offers to make, about (default 60)")
    parser.add_argument("--day", type=int, default=0,
                        help="days of trading after the first listing: each changes, sells and adds about a tenth"
                             " of the offers (default 0)")
    parser.add_argument("--force", action="store_true", help="write even when the folder is not empty")
    args = parser.parse_args(argv)
    if args.offers < 1:
        parser.error("--offers must be at least 1")
    if args.day < 0:
        parser.error("--day must be 0 or more")
    if args.folder.is_dir() and any(args.folder.iterdir()) and not args.force:
        print(f"{args.folder} is not empty; nothing written (use --force to replace its pages)")
        return 0
    catalog = generate_catalog(args.seed, args.offers)
    for day in range(1, args.day + 1):
        drift(catalog, args.seed * 1000 + day)
    pages = write_pages(args.folder, catalog)
    print(f"wrote {pages} shop pages to {args.folder} (seed {args.seed}, day {args.day})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
