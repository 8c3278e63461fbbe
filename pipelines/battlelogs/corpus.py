"""Generate synthetic TimeZero battle logs (``.tzb``) with their expected parse.

A generated log is UTF-8 XML without a declaration, shaped like the logs the
game server returns for ``//blook``. A ``<BATTLE>`` header contains terrain
rows, the roster and the objects on the map. One ``<TURN>`` per turn follows,
with one ``<USER>`` block of ``<a>`` actions per acting unit. The generator plays a
plausible fight (moves, shots, bursts, heals, poison, kills, escapes, pickups,
late joiners) and, while it writes each action, adds up the totals a
conforming parser must report. Those totals are the ``truth`` of a
:class:`GeneratedLog`, in the shape ``tzr-ingest show FILE`` prints, plus a
``roster`` key: per login, the roster attributes that tzr-ingest stores
(level, clan, profession, creature type, rank and PvE points, monster kind,
elite marker).

Every draw comes from the ``random.Random`` instance passed in, so a seed
fixes the bytes. The file layout varies on purpose: attribute order, quote
characters, line breaks, an optional ``<BLOOK>`` wrapper, TURNs nested in
BATTLE, entity-escaped names and duplicated battles.

By default each battle has new players. :func:`write_corpus` with
``players`` plays the battles with a population of recurring players, bots
and clans instead (see :mod:`pipelines.battlelogs.population`).

Run ``python -m pipelines.battlelogs.corpus OUT_DIR --count N`` to write a
corpus to disk.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import operator
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipelines.battlelogs.population import (
    DEFAULT_INTERVAL,
    Cast,
    Member,
    Population,
    Schedule,
    check_population_options,
    draw_clan,
    draw_login,
)


KINDS = ("pve", "pvp", "mixed")
DEFAULT_KIND_WEIGHTS = {"pve": 0.80, "pvp": 0.15, "mixed": 0.05}
SERVER = "main"
SHARD_SIZE = 50_000
TRUTH_FILE = "truth.jsonl"
POPULATION_FILE = "population.json"

# Battle start times are drawn from 2025-10-01T00:00:00Z up to
# 2026-01-01T00:00:00Z minus the longest battle.
PERIOD_START = 1_759_276_800
PERIOD_END = 1_767_225_600
MIN_DURATION = 96
MAX_DURATION = 383
MIN_TURNS = 2
MAX_TURNS = 25

# Bounds on the size drawn for one battle (before duplication), in bytes.
# Production samples were 14.7-288 KB, and the largest had 408 monsters.
MIN_TARGET_SIZE = 17_500
MAX_TARGET_SIZE = 282_000

MAP_ROWS = 26
MAP_COLUMNS = 48
# Terrain sprites other than "B", the open ground, which is the most common cell.
OBSTACLE_LETTERS = "ACDEFGHIJKLMNOPQRSTUVWXYZacdeghjkmnpqrtuwy"
MAP_TEMPLATE_COUNT = 40

# A turn gives the units at most MAX_PASSES rounds of actions, and one unit at
# most its action cap. Both grow when many units are dead or escaped.
MAX_PASSES = 20
PLAYER_ACTION_CAP = 60
MONSTER_ACTION_CAP = 26

# Fates of a population's bots, which farm weak monsters: they die in 1 of
# 200 battles and escape from 1 of 100, against 7 and 14 in 100 for humans in PvE.
BOT_DEATH_SHARE = 0.005
BOT_ESCAPE_SHARE = 0.01


@dataclass(frozen=True)
class GeneratedLog:
    """One synthetic battle log and the parse a conforming parser must produce."""

    battle_id: int
    data: bytes
    truth: dict


class CorpusFile(NamedTuple):
    """A log written by :func:`write_corpus`."""

    battle_id: int
    path: Path


# ---------------------------------------------------------------------------
# Game data: monster families, items, names.


@dataclass(frozen=True)
class _Family:
    prefixes: tuple[str, ...]
    img: str
    man: int
    base_hp: int
    min_level: int
    max_level: int
    weight: int
    effects: str
    parts: tuple[str, ...]

    @property
    def kind(self) -> str:
        # The parser's monster_kind code: the shortest login prefix, because
        # it maps the longer aliases "stich" and "scrp" to "sti" and "scr".
        return min(self.prefixes, key=len)


_FAMILIES = (
    _Family(
        ("rat",), "rat", 3, 40, 1, 16, 30, "P",
        ("Rat Brain", "Rat Eyes", "Rat Fang", "Rat Skin"),
    ),
    _Family(
        ("stich", "sti"), "stich", 4, 90, 6, 18, 14, "O",
        ("Stich Blood", "Stich Bone Marrow", "Stich Claw", "Stich Meat", "Stich Skin"),
    ),
    _Family(
        ("vzz",), "vzz", 7, 50, 4, 16, 10, "N",
        ("Vzzik Egg Fragments", "Vzzik Shell Powder", "Vzzik Wings"),
    ),
    _Family(("dog",), "dog", 8, 70, 5, 16, 8, "C", ()),
    _Family(("scr", "scrp"), "scorp", 16, 80, 8, 18, 7, "O", ("Scorp Tail M",)),
    _Family(("wrm",), "worm", 17, 120, 8, 18, 4, "", ()),
    _Family(("spd",), "spider", 18, 60, 6, 17, 5, "O", ()),
    _Family(("mts",), "mantis", 20, 110, 10, 18, 4, "P", ()),
    _Family(("tur",), "turret", 22, 150, 5, 15, 3, "", ()),
    _Family(("bmi",), "mine", 2, 20, 1, 10, 3, "", ()),
    _Family(("gek",), "gecko", 12, 55, 3, 14, 5, "H", ()),
    _Family(("pco",), "robocop", 5, 160, 8, 18, 3, "D", ()),
    _Family(
        ("std",), "jelly", 6, 70, 6, 16, 3, "Z",
        ("WitchJelly Acid", "WitchJelly Bille", "WitchJelly Enzyme"),
    ),
    _Family(
        ("zmb",), "zombie", 19, 100, 8, 18, 3, "V",
        ("Cursed Brain", "Cursed Paw", "Cursed Skin"),
    ),
)
_FAMILY_WEIGHTS = tuple(family.weight for family in _FAMILIES)

# (template code, display name) of the resources lying on battle maps.
_RESOURCES = (
    ("b2-s1", "Metals"),
    ("b2-s2", "Precious metals"),
    ("b2-s3", "Polymers"),
    ("b2-s4", "Organic"),
    ("b2-s5", "Silicon"),
    ("b2-s6", "Radioactive materials"),
    ("b2-s7", "Gems"),
    ("b2-s8", "Venom"),
)
_OTHER_ITEMS = (
    ("b2-m1", "Antidote"),
    ("b2-m2", "AntiHallucinogen"),
    ("b2-m3", "Fog-Remover"),
    ("b2-m4", "Water crystal"),
)
_PART_NAMES = sorted({part for family in _FAMILIES for part in family.parts})
_PART_CODES = {part: f"b2-p{index}" for index, part in enumerate(_PART_NAMES, start=1)}

# Equipment catalogue: slot, then (template code, display name) choices. The
# codes and names are invented, and only their shape follows the game.
_EQUIPMENT = {
    "A": (
        ("a1-h1", "Scout Helmet"), ("a1-h4", "Ranger Helmet"), ("a2-h2", "Heavy Visor"),
    ),
    "B": (("a1-b1", "Field Boots"), ("a2-b3", "Assault Boots")),
    "C": (
        ("a1-c2", "Kevlar Vest"), ("a3-c1", "Plated Armour"), ("a2-c5", "Desert Coat"),
    ),
    "D": (("a1-g1", "Leather Gloves"), ("a2-g2", "Tactical Gloves")),
    "E": (("a1-p3", "Cargo Pants"), ("a2-p1", "Armoured Pants")),
    "F": (
        ("c1-m1", "Medkit"), ("c1-g2", "Frag Grenade"), ("c2-i1", "Implant Mk2"),
        ("c1-s4", "Stimulator"),
    ),
    "GH": (
        ("b3-v1", "Pulse Carbine"), ("b5-v11", "Assault Rifle"),
        ("b4-v2", "Marksman Rifle"), ("b2-p7", "Psi Amplifier"),
        ("b6-v3", "Rocket Launcher"), ("b3-v8", "Laser Lance"),
    ),
}
_WEAPON_STYLES = {
    "b3-v1": "smg", "b5-v11": "rifle", "b4-v2": "sniper",
    "b2-p7": "psi", "b6-v3": "launcher", "b3-v8": "beam",
}
# Attack types with the number of hits one attack writes (bursts write 3-5).
_STYLE_ATTACKS = {
    "rifle": ((3, 1), (2, 1), (10, 1), (4, 3), (5, 4)),
    "smg": ((4, 3), (5, 4), (6, 5), (2, 1)),
    "sniper": ((3, 1), (10, 1), (2, 1)),
    "launcher": ((9, 1), (7, 1), (10, 1)),
    "psi": ((30, 1), (30, 1), (16, 1)),
    "beam": ((11, 1), (12, 1)),
    "melee": ((0, 1), (1, 1)),
}
_PSI_PROFESSIONS = (12, 14, 15, 16)

def _escape(text: str) -> str:
    # Escapes both quote characters, so a value is safe in either quoting.
    if not any(char in text for char in "&<>\"'"):
        return text
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        .replace('"', "&quot;").replace("'", "&apos;")
    )


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def _invalid_kind_message(kind: object) -> str:
    return f"invalid battle kind {kind!r}, expected one of {', '.join(KINDS)}"


def _iso(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# ---------------------------------------------------------------------------
# Map templates. Real maps are reused templates, so a battle picks one of a
# fixed set, built once per process from a constant seed.

# A map template: terrain rows, and the (bx, by) battle coordinates of open cells.
_MapTemplate = tuple[tuple[str, ...], tuple[tuple[int, int], ...]]
_map_templates: list[_MapTemplate] = []


def _build_map(rng: random.Random) -> _MapTemplate:
    grid = [["B"] * MAP_COLUMNS for _ in range(MAP_ROWS)]
    for _ in range(rng.randint(12, 40)):
        letter = rng.choice(OBSTACLE_LETTERS)
        row, column = rng.randrange(MAP_ROWS), rng.randrange(MAP_COLUMNS)
        for _ in range(rng.randint(1, 14)):
            grid[row][column] = letter
            row = min(MAP_ROWS - 1, max(0, row + rng.randint(-1, 1)))
            column = min(MAP_COLUMNS - 1, max(0, column + rng.randint(-1, 1)))
    rows = tuple("".join(cells) for cells in grid)

    # Battle coordinates are skewed hex coordinates. by is the row, and bx
    # shifts by half a cell per row, the inverse of the grid column
    # x = floor(bx - (24 - by) / 2 + 1).
    open_cells = tuple(
        (column + (25 - row) // 2, row)
        for row in range(MAP_ROWS)
        for column in range(MAP_COLUMNS)
        if grid[row][column] == "B"
    )
    return rows, open_cells


def _map_template(rng: random.Random) -> _MapTemplate:
    if not _map_templates:
        template_rng = random.Random("tzb-map-templates")
        for _ in range(MAP_TEMPLATE_COUNT):
            _map_templates.append(_build_map(template_rng))
    return _map_templates[int(rng.random() * len(_map_templates))]


# ---------------------------------------------------------------------------
# Markup: per-log choices of attribute order, quote characters and line breaks.

# Format variants per element signature (name, attribute names, closing):
# (canonical, shuffled variants, variants with some single quotes). A variant
# is (format, getter that reorders the canonical values for that format).
_variant_cache: dict[tuple, tuple] = {}
_CHOICE_SLOTS = 8


def _format(name: str, keys: Iterable[str], quotes: Iterable[str], closing: str) -> str:
    attributes = "".join(f" {key}={quote}%s{quote}" for key, quote in zip(keys, quotes))
    return f"<{name}{attributes}{closing}"


def _variant(
    name: str, keys: tuple, order: list[int], quotes: list[str], closing: str
) -> tuple:
    fmt = _format(name, (keys[i] for i in order), quotes, closing)
    getter = operator.itemgetter(*order) if len(order) > 1 else operator.itemgetter(0)
    return fmt, getter


def _build_variants(signature: tuple) -> tuple:
    name, keys, closing = signature
    rng = random.Random(repr(signature))
    count = len(keys)
    canonical = _variant(name, keys, list(range(count)), ['"'] * count, closing)

    shuffled, quoted = [], []
    for pool, single_quote_share in ((shuffled, 0.0), (quoted, 0.35)):
        for _ in range(12):
            order = list(range(count))
            rng.shuffle(order)
            quotes = ["'" if rng.random() < single_quote_share else '"' for _ in order]
            if single_quote_share and "'" not in quotes:
                quotes[rng.randrange(count)] = "'"
            pool.append(_variant(name, keys, order, quotes, closing))
    return canonical, tuple(shuffled), tuple(quoted)


class _Markup:
    """Formatting choices for one log, drawn from its generator."""

    def __init__(self, rng: random.Random):
        self.random = rng.random
        # Share of elements written in the canonical attribute order, and the
        # share written with some attributes in single quotes.
        self.canonical_share = rng.uniform(0.0, 0.7)
        self.quoted_share = 0.0 if rng.random() < 0.7 else rng.uniform(0.05, 0.3)
        roll = rng.random()
        if roll < 0.88:
            self.newline = "\n"
        elif roll < 0.97:
            self.newline = ""
        else:
            self.newline = "\r\n"
        # Per signature, the variants this log draws from, one per slot.
        self.choices: dict[tuple, tuple] = {}

    def _choose_variants(self, signature: tuple) -> tuple:
        variants = _variant_cache.get(signature)
        if variants is None:
            variants = _variant_cache[signature] = _build_variants(signature)
        canonical, shuffled, quoted = variants
        slots = []
        for _ in range(_CHOICE_SLOTS):
            roll = self.random()
            if roll < self.canonical_share:
                slots.append(canonical)
                continue
            if roll - self.canonical_share < self.quoted_share:
                pool = quoted
            else:
                pool = shuffled
            slots.append(pool[int(self.random() * len(pool))])
        choices = self.choices[signature] = tuple(slots)
        return choices

    def tag(self, signature: tuple, values: tuple) -> str:
        choices = self.choices.get(signature) or self._choose_variants(signature)
        fmt, getter = choices[int(self.random() * _CHOICE_SLOTS)]
        return fmt % getter(values)


def _signature(name: str, keys: str, closing: str = "/>") -> tuple:
    return (name, tuple(keys.split()), closing)


_SIG_MOVE = _signature("a", "sf t")
_SIG_FACING = _signature("a", "sf t direct")
_SIG_STANCE = _signature("a", "sf t run")
_SIG_WEAPON = _signature("a", "sf t weapon")
_SIG_ATTACK = _signature("a", "sf t type login HP")
_SIG_SELF = _signature("a", "sf t type HP")
_SIG_CELL = _signature("a", "sf t type xy HP")
_SIG_CREDIT = _signature("a", "sf t code login")
_SIG_PICKUP = _signature("a", "sf t id txt count")
_SIG_PICKUP_NO_COUNT = _signature("a", "sf t id txt")
_SIG_PICKUP_NO_ID = _signature("a", "sf t txt count")
_SIG_USER = _signature("USER", "login", ">")
_SIG_USER_HP = _signature("USER", "login HP", ">")
_SIG_JOIN = _signature("USER", "login sf", ">")
_SIG_JOIN_HP = _signature("USER", "login sf HP", ">")
_SIG_TURN = _signature("TURN", "turn", ">")
_SIG_MAP = _signature("MAP", "v")
_SIG_OBJECT = _signature("O", "id name txt count bx by")
_SIG_OBJECT_NO_COUNT = _signature("O", "id name txt bx by")
_SIG_EQUIPMENT = _signature("O", "id name txt slot")
_SIG_EQUIPMENT_DETAILS = _signature("O", "id name txt slot quality maxquality massa")


# ---------------------------------------------------------------------------
# Units.


class _Unit:
    """A player or monster, its state during the fight and its running totals."""

    __slots__ = (
        "login", "xml_login", "is_monster", "side", "camp", "level", "man", "hp",
        "max_hp", "bx", "by", "img", "clan", "pro", "rank_points", "pve_points",
        "spec_def", "spec_color", "equipment", "weapon_id", "style", "effects",
        "damage", "family", "in_roster", "join_turn", "fate", "fate_turn", "alive",
        "escaped", "poison", "enemies", "allies", "kills_monsters", "kills_players",
        "dealt", "taken", "healed", "member", "bot",
    )

    def __init__(self, login: str, is_monster: bool, side: int, level: int):
        self.login = login
        self.xml_login = _escape(login)
        self.is_monster = is_monster
        self.side = side
        self.camp = side
        self.level = level

        # Roster attributes.
        self.man = 1
        self.hp = self.max_hp = 100
        self.bx = self.by = 0
        self.img = None
        self.clan = None
        self.pro = 0
        self.rank_points = "0"
        self.pve_points = 0
        self.spec_def = None
        self.spec_color = None

        # Combat profile.
        self.equipment: list[tuple] = []
        self.weapon_id = None
        self.style = "melee"
        self.effects = ""
        self.damage = (5, 10)
        self.family = None

        # Joining, fate and state during the fight.
        self.in_roster = True
        self.join_turn = 0
        self.fate = None
        self.fate_turn = 0
        self.alive = True
        self.escaped = False
        self.poison = None
        self.enemies: list[_Unit] = []
        self.allies: list[_Unit] = []

        # Totals reported in the truth.
        self.kills_monsters = self.kills_players = 0
        self.dealt = self.taken = self.healed = 0

        # The population member that plays this unit, if any.
        self.member = None
        self.bot = False


class _Block:
    """The ``<USER>`` element of one unit inside one TURN, with its actions."""

    __slots__ = ("unit", "parts", "join_frame", "opening", "children")

    def __init__(self, unit: _Unit):
        self.unit = unit
        self.parts: list[str] = []
        # Set in the unit's join turn: the frame it joins in, its fixed opening
        # tag when it is missing from the roster, and its equipment elements.
        self.join_frame = None
        self.opening = None
        self.children = ""


# ---------------------------------------------------------------------------
# Battle shapes.


@dataclass
class _Shape:
    """Plan of one battle: player sides, monster count, turns and size in bytes."""

    kind: str
    variant: str  # solo, group, huge, duel, skirmish or mixed
    player_sides: list[int]
    monsters: int
    turns: int
    target_size: float


def _clamped_gauss(
    rng: random.Random, mean: float, sigma: float, low: int, high: int
) -> int:
    return max(low, min(high, round(rng.gauss(mean, sigma))))


def _draw_turns(rng: random.Random, mean: float, sigma: float, low: int) -> int:
    # A short fight of 2-3 turns now and then, otherwise at least ``low`` turns.
    if rng.random() < 0.03:
        return rng.randint(MIN_TURNS, 3)
    return _clamped_gauss(rng, mean, sigma, low, MAX_TURNS)


def _size_model(shape: _Shape) -> tuple[float, float]:
    """Estimate the bytes of a log outside its TURNs, and the bytes one turn can hold.

    An action averages about 30 bytes, and units rarely reach their per-turn
    cap, hence the 0.5.
    """
    players, monsters = len(shape.player_sides), shape.monsters
    fixed = 2_000 + players * 1_300 + monsters * 125
    capacity = (players * PLAYER_ACTION_CAP + monsters * MONSTER_ACTION_CAP) * 30 * 0.5
    return fixed, capacity


def _plan_shape(rng: random.Random, kind: str) -> _Shape:
    shape = _draw_shape(rng, kind)
    fixed, capacity = _size_model(shape)
    if shape.turns <= 3:
        # A short fight keeps its turns and gets a size it can hold.
        largest = fixed + capacity * shape.turns
        shape.target_size = max(MIN_TARGET_SIZE, min(shape.target_size, largest))
    needed = math.ceil(max(0.0, shape.target_size - fixed) / capacity)
    shape.turns = min(MAX_TURNS, max(shape.turns, needed))
    return shape


def _draw_shape(rng: random.Random, kind: str) -> _Shape:
    uniform = rng.uniform
    if kind == "pve":
        roll = rng.random()
        if roll < 0.012:
            players = rng.choice((1, 2, 2, 3, 3, 4, 5, 6))
            monsters = rng.randint(100, 400)
            size = 9_000 + players * 3_000 + monsters * uniform(620, 690)
            turns = _draw_turns(rng, 14, 5, 6)
            return _Shape(kind, "huge", [1] * players, monsters, turns, size)
        if roll < 0.2:
            players = rng.randint(2, 4)
            monsters = rng.randint(17, 45)
            size = 8_000 + players * 3_000 + monsters * uniform(1_300, 1_900)
            turns = _draw_turns(rng, 10, 4, 4)
            return _Shape(kind, "group", [1] * players, monsters, turns, size)
        monsters = rng.randint(17, 35)
        size = 8_000 + monsters * uniform(1_340, 1_960)
        return _Shape(kind, "solo", [1], monsters, _draw_turns(rng, 9, 4, 4), size)

    if kind == "pvp":
        if rng.random() < 0.78:
            turns = _draw_turns(rng, 13, 5, 6)
            return _Shape(kind, "duel", [1, 2], 0, turns, uniform(16_500, 27_500))
        players = rng.randint(3, 6)
        sides = rng.choice((2, 2, 3))
        player_sides = [index % sides + 1 for index in range(players)]
        rng.shuffle(player_sides)
        size = 6_000 + players * uniform(4_500, 6_500)
        turns = _draw_turns(rng, 10, 4, 4)
        return _Shape(kind, "skirmish", player_sides, 0, turns, size)

    if kind == "mixed":
        players = rng.randint(2, 6)
        player_sides = [index % 2 + 1 for index in range(players)]
        rng.shuffle(player_sides)
        monsters = rng.randint(5, 25)
        size = 8_000 + players * uniform(3_500, 5_000)
        size += monsters * uniform(1_300, 1_800)
        turns = _draw_turns(rng, 10, 4, 4)
        return _Shape(kind, "mixed", player_sides, monsters, turns, size)

    raise ValueError(_invalid_kind_message(kind))


def _draw_duration(rng: random.Random, turns: int) -> int:
    duration = MIN_DURATION + turns * rng.uniform(0.5, 3.5)
    if rng.random() < 0.15:
        duration += rng.uniform(0, 200)
    return max(MIN_DURATION, min(MAX_DURATION, round(duration)))


# Share of battles with late joiners, per battle shape.
_JOINER_SHARES = {
    "solo": 0.05, "group": 0.08, "huge": 0.1,
    "duel": 0.06, "skirmish": 0.12, "mixed": 0.15,
}
# Share of battles without objects on the map, per kind (huge fights always have some).
_EMPTY_MAP_SHARES = {"pve": 0.25, "pvp": 0.6, "mixed": 0.3}

# Weights of the f letters A, B, C and D per kind.
_BATTLE_TYPE_WEIGHTS = {
    "pve": (10, 70, 10, 10),
    "pvp": (75, 10, 10, 5),
    "mixed": (20, 20, 50, 10),
}


def _draw_battle_type(rng: random.Random, kind: str) -> str:
    # The meaning of f is unknown, and production PvE fights carry all of A-D.
    weights = _BATTLE_TYPE_WEIGHTS[kind]
    return rng.choices("ABCD", weights)[0]


# ---------------------------------------------------------------------------
# The battle generator.


class _Battle:
    """Generator state for one battle. :meth:`build` plays it and returns the log.

    With a ``cast`` the players are population members, and :attr:`kind`
    may change to "pve" when too few members are ready for a PvP or mixed
    battle.
    """

    def __init__(
        self,
        rng: random.Random,
        battle_id: int,
        kind: str,
        start: int,
        duplicate: bool,
        cast: Cast | None = None,
    ):
        self.rng = rng
        self.random = rng.random
        self.battle_id = battle_id
        self.kind = kind
        self.start = start
        self.end = start
        self.duplicate = duplicate
        self.cast = cast
        self.markup = _Markup(rng)
        self.shape = _plan_shape(rng, kind)
        if cast is not None:
            self._seat_cast()
        self.turns = self.shape.turns
        self.map_rows, self.open_cells = _map_template(rng)
        # Distinct cells for units and map objects, handed out by _cell().
        cell_count = min(len(self.open_cells), 80 + self.shape.monsters)
        self.cells = rng.sample(self.open_cells, cell_count)
        self.next_cell = 0
        self.next_item_id = rng.randint(150_000_000, 190_000_000)
        self.logins: set[str] = set()

        self.units: list[_Unit] = []
        self.roster: list[_Unit] = []
        self.turn_only: list[_Unit] = []
        # Units missing from the roster, in the order their USER tags appear.
        self.appeared: list[_Unit] = []
        self.map_objects: list[tuple] = []
        self.unpicked: list[tuple] = []
        self.drops: list[tuple] = []
        self.pickups: list[tuple[_Unit, int | None, str, int | None]] = []

        # Sizes are in UTF-8 bytes, and len() counts them only for ASCII text.
        self.measure = len
        self.size = 0
        self.turn = 0
        self.frame = 0
        self.blocks: dict[_Unit, _Block] = {}
        self.block_order: list[_Block] = []
        self.due_deaths: list[_Unit] = []
        self.turn_texts: list[str] = []

    # Setup -----------------------------------------------------------------

    def _seat_cast(self) -> None:
        # Fits the planned shape to the members that are ready. A PvP or
        # mixed battle that fills only one side becomes a PvE battle, and the
        # shape keeps only the player sides that got a member.
        seated = self.cast.seat(self.kind, self.shape.player_sides)
        if self.kind != "pve" and len(set(seated)) < 2:
            self.kind = "pve"
            self.shape = _plan_shape(self.rng, "pve")
            seated = self.cast.seat("pve", self.shape.player_sides)
        self.shape.player_sides = seated

    def _cell(self) -> tuple[int, int]:
        if self.next_cell < len(self.cells):
            cell = self.cells[self.next_cell]
            self.next_cell += 1
            return cell
        return self.open_cells[int(self.random() * len(self.open_cells))]

    def _item_id(self) -> int:
        self.next_item_id += self.rng.randint(1, 4_000)
        return self.next_item_id

    def _player_login(self) -> str:
        return draw_login(self.rng, self.logins)

    def _make_player(self, side: int) -> _Unit:
        rng = self.rng
        level = rng.randint(8, 20)
        unit = _Unit(self._player_login(), False, side, level)
        unit.man = rng.choice((0, 1, 1))
        unit.hp = unit.max_hp = round(100 + level * rng.uniform(15, 30))
        unit.bx, unit.by = self._cell()
        unit.clan = draw_clan(rng)
        unit.pro = rng.randint(0, 17)
        points = rng.uniform(0, 1_500)
        unit.rank_points = rng.choice(
            (f"{points:.0f}", f"{points:.1f}", f"{points:.1f}", f"{points:.2f}")
        )
        unit.pve_points = rng.randint(0, 900_000)
        self._arm(unit)
        return unit

    def _make_member(self, member: Member, side: int) -> _Unit:
        rng = self.rng
        self.logins.add(member.login)
        unit = _Unit(member.login, False, side, member.level)
        unit.member = member
        unit.bot = member.bot
        unit.man = member.man
        unit.hp = unit.max_hp = round(100 + member.level * rng.uniform(15, 30))
        unit.bx, unit.by = self._cell()
        unit.clan = member.clan
        unit.pro = member.profession
        unit.rank_points = member.rank_points_text()
        unit.pve_points = member.pve_points
        self._arm(unit)
        return unit

    def _make_joining_player(self, side: int) -> _Unit | None:
        # Returns None when a population has no member ready to join.
        if self.cast is None:
            return self._make_player(side)
        member = self.cast.joiner()
        return None if member is None else self._make_member(member, side)

    def _arm(self, unit: _Unit) -> None:
        self._equip(unit)
        base = 8 + unit.level * self.rng.uniform(2.0, 4.0)
        unit.damage = (round(base * 0.5), round(base * 1.5))

    def _equip(self, unit: _Unit) -> None:
        rng = self.rng
        if rng.random() < 0.05:
            unit.style = "psi" if unit.pro in _PSI_PROFESSIONS else "melee"
            return
        weapon_code, weapon_name = rng.choice(_EQUIPMENT["GH"])
        if unit.pro in _PSI_PROFESSIONS and rng.random() < 0.7:
            weapon_code, weapon_name = "b2-p7", "Psi Amplifier"
        unit.style = _WEAPON_STYLES[weapon_code]
        unit.weapon_id = self._item_id()
        items = [(unit.weapon_id, weapon_code, weapon_name, "GH")]
        for slot in "ABCDEF":
            for _ in range(1 if slot != "F" else rng.randint(1, 5)):
                if rng.random() < 0.85:
                    code, name = rng.choice(_EQUIPMENT[slot])
                    items.append((self._item_id(), code, name, slot))
        for _ in range(rng.randint(0, 4)):
            code, name = rng.choice(_EQUIPMENT["GH"])
            items.append((self._item_id(), code, name, "F"))
        rng.shuffle(items)
        # Some items also carry quality, maxquality and massa.
        unit.equipment = []
        for item_id, code, name, slot in items:
            details = None
            if rng.random() < 0.4:
                quality = rng.randint(20, 120)
                details = (quality, rng.randint(120, 200), rng.randint(100, 9000))
            unit.equipment.append((item_id, code, name, slot, details))

    def _monster_login(self, family: _Family, elite_suffix: bool) -> str:
        rng = self.rng
        prefix = family.prefixes[0]
        if len(family.prefixes) > 1 and rng.random() >= 0.7:
            prefix = family.prefixes[1]
        while True:
            login = f"${prefix}{rng.randint(1, 999)}"
            if elite_suffix:
                login += f"_{rng.randint(1, 9999)}"
            if login not in self.logins:
                self.logins.add(login)
                return login

    def _make_monster(self, family: _Family, side: int) -> _Unit:
        rng = self.rng
        elite = rng.random() < 0.07
        marks = rng.choice(("suffix", "def", "color", "suffix+def")) if elite else ""
        level = rng.randint(family.min_level, family.max_level)
        unit = _Unit(self._monster_login(family, "suffix" in marks), True, side, level)
        unit.family = family
        unit.man = family.man if family.img != "turret" else rng.choice((21, 22, 23))
        unit.img = family.img
        unit.effects = family.effects
        max_hp = family.base_hp * (0.6 + level / 12)
        if elite:
            max_hp *= 1.6
        unit.hp = unit.max_hp = round(max_hp)
        unit.bx, unit.by = self._cell()
        if "def" in marks:
            unit.spec_def = str(rng.randint(1, 5))
        elif marks == "color":
            unit.spec_color = f",,,,-{rng.randint(5, 60)}"
        base = 3 + level * rng.uniform(1.0, 2.5)
        unit.damage = (round(base * 0.6), round(base * 1.4))
        return unit

    def _make_units(self) -> None:
        rng = self.rng
        shape = self.shape
        if self.cast is None:
            players = [self._make_player(side) for side in shape.player_sides]
        else:
            seats = self.cast.seats
            players = [self._make_member(member, side) for member, side in seats]

        monster_side = 2 if shape.kind == "pve" else max(shape.player_sides) + 1
        families = rng.choices(_FAMILIES, _FAMILY_WEIGHTS, k=rng.randint(1, 3))
        monsters = []
        for _ in range(shape.monsters):
            family = families[0] if rng.random() < 0.6 else rng.choice(families)
            monsters.append(self._make_monster(family, monster_side))

        joiners = self._make_joiners(families, monster_side)
        roster_joiners = [unit for unit in joiners if unit.in_roster]
        self.turn_only = [unit for unit in joiners if not unit.in_roster]
        self.roster = players + roster_joiners + monsters
        if rng.random() < 0.08:
            rng.shuffle(self.roster)
        self.units = self.roster + self.turn_only
        self._assign_relations()
        names = [unit.login + (unit.clan or "") for unit in self.units]
        if not all(name.isascii() for name in names):
            self.measure = _utf8_length

    def _make_joiners(self, families: list[_Family], monster_side: int) -> list[_Unit]:
        rng = self.rng
        shape = self.shape
        if rng.random() >= _JOINER_SHARES[shape.variant]:
            return []
        joiners = []
        for _ in range(1 if rng.random() < 0.85 else 2):
            if self.turns < 2 or rng.random() < 0.1:
                join_turn = 1
            else:
                join_turn = rng.randint(2, self.turns)
            if shape.kind != "pvp" and rng.random() < 0.3:
                unit = self._make_monster(rng.choice(families), monster_side)
                unit.in_roster = False
            else:
                # Roster-listed joiners are a third party on side 3. Joiners
                # seen only in TURNs also join one of the existing sides.
                in_roster = rng.random() < 0.6
                side = 3
                if not in_roster and rng.random() >= 0.6:
                    side = rng.choice(shape.player_sides)
                unit = self._make_joining_player(side)
                if unit is None:
                    continue
                unit.in_roster = in_roster
            unit.join_turn = join_turn
            joiners.append(unit)
        return joiners

    def _assign_relations(self) -> None:
        # In PvE every player is on one team against the monsters. Otherwise
        # players of different sides fight each other, and monsters fight all.
        for unit in self.units:
            if unit.is_monster:
                unit.camp = 0
            elif self.kind == "pve":
                unit.camp = 1
            else:
                unit.camp = unit.side
        for unit in self.units:
            unit.enemies = []
            unit.allies = []
            for other in self.units:
                if other is unit or (unit.is_monster and other.is_monster):
                    continue
                if other.camp != unit.camp:
                    unit.enemies.append(other)
                elif not unit.is_monster:
                    unit.allies.append(other)

    def _plan_fates(self) -> None:
        rng = self.rng
        shape = self.shape
        turns = self.turns
        if shape.variant == "huge":
            monster_death_share = rng.uniform(0.15, 0.6)
        else:
            monster_death_share = rng.uniform(0.3, 1.0)

        if shape.variant == "duel":
            loser = rng.choice([unit for unit in self.units if unit.join_turn == 0])
            roll = rng.random()
            if roll < 0.55:
                loser.fate, loser.fate_turn = "die", turns
            elif roll < 0.75:
                loser.fate, loser.fate_turn = "escape", turns

        for unit in self.units:
            earliest = unit.join_turn + 1
            if earliest > turns or unit.fate is not None:
                continue
            if shape.variant == "duel" and unit.join_turn == 0:
                continue
            self._draw_fate(unit, monster_death_share, earliest)

        # A battle ends when a camp is wiped out, so the last member of such a
        # camp leaves in the final turn.
        camps: dict[int, list[_Unit]] = {}
        for unit in self.units:
            camps.setdefault(unit.camp, []).append(unit)
        for members in camps.values():
            if all(member.fate is not None for member in members):
                last = max(members, key=lambda member: member.fate_turn)
                last.fate_turn = turns

    def _draw_fate(
        self, unit: _Unit, monster_death_share: float, earliest: int
    ) -> None:
        rng = self.rng
        turns = self.turns
        if unit.is_monster:
            elite = unit.spec_def or "_" in unit.login
            death_share = monster_death_share * (0.7 if elite else 1.0)
            escape_share = 0.01
        elif unit.bot:
            death_share, escape_share = BOT_DEATH_SHARE, BOT_ESCAPE_SHARE
        elif self.kind == "pve":
            death_share, escape_share = 0.07, 0.14
        else:
            death_share, escape_share = 0.3, 0.08

        roll = rng.random()
        if roll < death_share:
            unit.fate = "die"
        elif roll < death_share + escape_share:
            unit.fate = "escape"
        else:
            return
        if unit.is_monster or rng.random() < 0.4:
            unit.fate_turn = rng.randint(earliest, turns)
        elif rng.random() < 0.6:
            unit.fate_turn = turns
        else:
            unit.fate_turn = rng.randint(max(earliest, turns // 2), turns)

    def _make_objects(self) -> None:
        rng = self.rng
        if self.shape.variant == "huge":
            count = rng.randint(5, 30)
        elif rng.random() < _EMPTY_MAP_SHARES[self.kind]:
            count = 0
        else:
            count = rng.randint(1, 5 if self.kind == "pvp" else 12)
        parts = [
            part for unit in self.units if unit.family for part in unit.family.parts
        ]
        for _ in range(count):
            roll = rng.random()
            if roll < 0.7 or not parts and roll < 0.9:
                code, name = rng.choice(_RESOURCES)
                quantity = rng.randint(1, 30)
            elif roll < 0.9:
                name = rng.choice(parts)
                code, quantity = _PART_CODES[name], rng.randint(1, 3)
            else:
                code, name = rng.choice(_OTHER_ITEMS)
                quantity = 1
            bx, by = self._cell()
            self.map_objects.append((self._item_id(), code, name, quantity, bx, by))
        self.unpicked = list(self.map_objects)

    # Writing helpers ---------------------------------------------------------

    def _add(self, block: _Block, text: str) -> None:
        block.parts.append(text)
        self.size += self.measure(text)

    def _block(self, unit: _Unit) -> _Block:
        block = self.blocks.get(unit)
        if block is None:
            block = self.blocks[unit] = _Block(unit)
            self.block_order.append(block)
            self.size += self.measure(unit.xml_login) + 24
            if unit.join_turn == self.turn:
                self._open_joiner(block)
        return block

    def _open_joiner(self, block: _Block) -> None:
        # The joiner's USER tag in its join turn carries sf and its equipment.
        # A unit missing from the roster also carries its roster attributes.
        unit = block.unit
        block.join_frame = self.frame
        block.children = "".join(self._equipment_tags(unit))
        self.size += self.measure(block.children) + 8
        if not unit.in_roster:
            self.appeared.append(unit)
            keys, values = self._unit_attributes(unit)
            keys.insert(1, "sf")
            values.insert(1, self.frame)
            block.opening = self.markup.tag(("USER", tuple(keys), ">"), tuple(values))
            self.size += self.measure(block.opening)

    def _write(self, block: _Block, signature: tuple, values: tuple) -> None:
        self._add(block, self.markup.tag(signature, values))

    def _tick(self) -> int:
        self.frame += int(self.random() * 3)
        return self.frame

    def _roll(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def _targetable(self, unit: _Unit) -> bool:
        # A unit joining in this turn is never a target in that turn, so its
        # own USER tag is the first place its login appears.
        return unit.alive and not unit.escaped and unit.join_turn < self.turn

    def _random_enemy(self, unit: _Unit) -> _Unit | None:
        enemies = unit.enemies
        if not enemies:
            return None
        for _ in range(6):
            enemy = enemies[int(self.random() * len(enemies))]
            if self._targetable(enemy):
                return enemy
        living = [enemy for enemy in enemies if self._targetable(enemy)]
        return living[int(self.random() * len(living))] if living else None

    def _due_victim(self, unit: _Unit) -> _Unit | None:
        for victim in self.due_deaths:
            if victim.camp == unit.camp or not self._targetable(victim):
                continue
            if victim in unit.enemies:
                return victim
        return None

    # Actions -----------------------------------------------------------------

    def _move(self, block: _Block, steps: int) -> None:
        tag = self.markup.tag
        parts = block.parts
        for _ in range(steps):
            self.frame += 1
            text = tag(_SIG_MOVE, (self.frame, 2))
            parts.append(text)
            self.size += len(text)

    def _descriptor(self, amount: int, effect: str | None) -> str:
        roll = self.random()
        if roll < 0.7:
            hit_kind = 0  # normal
        elif roll < 0.9:
            hit_kind = 1  # critical
        else:
            hit_kind = 2  # armour-piercing
        if effect:
            return f"{hit_kind}:{amount}:{effect}"
        if hit_kind == 0 and roll < 0.07:
            return str(amount)
        return f"{hit_kind}:{amount}"

    def _account(self, actor: _Unit, target: _Unit, amount: int) -> None:
        if amount > 0:
            actor.dealt += amount
            target.taken += amount
        elif amount < 0:
            target.healed -= amount

    def _attack_type(self, actor: _Unit) -> tuple[int | str, int]:
        # Returns the attack type and the number of hits it writes.
        roll = self.random()
        if actor.is_monster:
            if roll < 0.6:
                return 0, 1
            if roll < 0.88:
                return 1, 1
            return 2, 1
        attacks = _STYLE_ATTACKS[actor.style]
        attack = attacks[int(roll * len(attacks))]
        roll = self.random()
        if roll < 0.04:
            return "useperk", 1
        if roll < 0.06:
            return 8, 1
        return attack

    def _effect(self, actor: _Unit, attack_type: int | str, amount: int) -> str | None:
        # Returns the status effect a hit applies, such as "O3" (poison of 3).
        random_ = self.random
        if attack_type == 16:
            return f"{'DNHC'[int(random_() * 4)]}{self._roll(1, 6)}"
        if amount <= 0 or random_() >= (0.3 if actor.is_monster else 0.08):
            return None
        letters = actor.effects if actor.is_monster else "OPNHDCZV"
        if not letters:
            return None
        return f"{letters[int(random_() * len(letters))]}{self._roll(1, 9)}"

    def _attack(self, actor: _Unit, target: _Unit, lethal: bool) -> None:
        block = self._block(actor)
        random_ = self.random
        attack_type, hits = self._attack_type(actor)
        frame = self._tick()
        low, high = actor.damage
        login = target.xml_login

        for hit in range(hits):
            last = hit == hits - 1
            killing_hit = lethal and last
            if attack_type in (9, 11, 12) and not killing_hit and random_() < 0.4:
                # Burn (rockets) or energy (beams) damage, which is not a plain hit.
                letter = "B" if attack_type == 9 else "E"
                descriptor = f"0:{letter}{self._roll(low, high)}"
                values = (frame, 5, attack_type, login, descriptor)
                self._write(block, _SIG_ATTACK, values)
                continue

            if killing_hit:
                amount = target.hp + self._roll(0, 25)
            elif random_() < 0.13 or attack_type == 16:
                amount = 0
            else:
                amount = max(0, min(self._roll(low, high), target.hp - 1))
            effect = self._effect(actor, attack_type, amount)
            if amount == 0 and not effect:
                descriptor = "0:0"
            else:
                descriptor = self._descriptor(amount, effect)
            self._write(block, _SIG_ATTACK, (frame, 5, attack_type, login, descriptor))
            self._account(actor, target, amount)
            target.hp -= amount
            if effect and effect[0] == "O" and not killing_hit:
                target.poison = [actor, self._roll(5, 20), self._roll(1, 4)]
        if lethal:
            self._kill(actor, block, target, frame)

    def _kill(self, killer: _Unit, block: _Block, victim: _Unit, frame: int) -> None:
        self._write(block, _SIG_CREDIT, (frame, 20, 7, victim.xml_login))
        if victim.is_monster:
            killer.kills_monsters += 1
        elif victim is not killer:
            killer.kills_players += 1
        self._die(victim, frame)

        # A dead monster sometimes drops a part. Picking up a drop that is not
        # among the map objects flags the log "unmatched_pickups", so drops are
        # rare in logs that list map objects.
        parts = victim.family.parts if victim.family else ()
        drop_share = 0.005 if self.map_objects else 0.3
        if parts and self.random() < drop_share:
            part = parts[int(self.random() * len(parts))]
            self.drops.append((self._item_id(), part, self._roll(1, 3)))

    def _die(self, victim: _Unit, frame: int) -> None:
        self._write(self._block(victim), _SIG_MOVE, (frame, 7))
        victim.alive = False
        victim.hp = 0

    def _self_kill(self, unit: _Unit) -> None:
        # A grenade thrown at the unit's own cell. The kill credit names the
        # unit itself, which counts as no kill.
        block = self._block(unit)
        frame = self._tick()
        amount = unit.hp + self._roll(0, 30)
        self._write(block, _SIG_ATTACK, (frame, 5, 7, unit.xml_login, f"0:{amount}"))
        self._account(unit, unit, amount)
        self._kill(unit, block, unit, frame)

    def _heal(self, unit: _Unit) -> bool:
        # Returns whether the unit healed itself or an ally.
        random_ = self.random
        if unit.hp < unit.max_hp * 0.45 and random_() < 0.5:
            amount = min(unit.max_hp - unit.hp, self._roll(15, 80))
            if amount > 0:
                attack_type = 13 if random_() < 0.7 else 29
                values = (self._tick(), 5, attack_type, f"0:-{amount}")
                self._write(self._block(unit), _SIG_SELF, values)
                unit.healed += amount
                unit.hp += amount
                return True

        medic = unit.pro == 15 or unit.style == "psi"
        if not unit.allies or random_() >= (0.25 if medic else 0.04):
            return False
        ally = unit.allies[int(random_() * len(unit.allies))]
        if not self._targetable(ally) or ally.hp >= ally.max_hp:
            return False
        amount = min(ally.max_hp - ally.hp, self._roll(10, 90))
        attack_type = 14 if random_() < 0.6 else 15
        values = (self._tick(), 5, attack_type, ally.xml_login, f"0:-{amount}")
        self._write(self._block(unit), _SIG_ATTACK, values)
        ally.healed += amount
        ally.hp += amount
        return True

    def _shoot_cell(self, unit: _Unit) -> None:
        bx, by = self.open_cells[int(self.random() * len(self.open_cells))]
        attack_type = (10, 2, 3, 7)[int(self.random() * 4)]
        values = (self._tick(), 5, attack_type, f"{bx},{by}", "0:0")
        self._write(self._block(unit), _SIG_CELL, values)

    def _pickup(self, unit: _Unit) -> None:
        random_ = self.random
        block = self._block(unit)
        self._move(block, self._roll(1, 3))
        if self.unpicked and (not self.drops or random_() < 0.7):
            item = self.unpicked.pop(int(random_() * len(self.unpicked)))
            item_id, _, name, quantity = item[:4]
        elif self.drops:
            item_id, name, quantity = self.drops.pop(int(random_() * len(self.drops)))
        else:
            return

        roll = random_()
        xml_name = _escape(name)
        frame = self._tick()
        if roll < 0.01:
            # Parsers skip a pickup without an id.
            self._write(block, _SIG_PICKUP_NO_ID, (frame, 8, xml_name, quantity))
            return
        if roll < 0.09:
            count = None
            self._write(block, _SIG_PICKUP_NO_COUNT, (frame, 8, item_id, xml_name))
        else:
            count = 0 if roll < 0.13 else quantity
            self._write(block, _SIG_PICKUP, (frame, 8, item_id, xml_name, count))
        self.pickups.append((unit, item_id, name, count))

        if random_() < 0.03:
            # The same stack reported twice, which counts once.
            values = (self._tick(), 8, item_id, xml_name, count or 0)
            self._write(block, _SIG_PICKUP, values)
            self.pickups.append((unit, item_id, name, count or 0))

    def _poison_ticks(self) -> None:
        # A poisoned unit's block opens with a tick naming the unit that
        # applied the poison, while that unit is still in the fight.
        for unit in self.units:
            poison = unit.poison
            if poison is None or not unit.alive or unit.escaped:
                continue
            applier, strength, turns_left = poison
            if not applier.alive or applier.escaped or turns_left <= 0:
                unit.poison = None
                continue
            values = (self._tick(), 5, 3, applier.xml_login, f"0:A-{strength}")
            self._write(self._block(unit), _SIG_ATTACK, values)
            if turns_left > 1:
                unit.poison = [applier, max(1, strength - 1), turns_left - 1]
            else:
                unit.poison = None

    def _escape_now(self, unit: _Unit) -> None:
        self._write(self._block(unit), _SIG_MOVE, (self._tick(), 9))
        unit.escaped = True

    # Turns -------------------------------------------------------------------

    def _player_chunk(self, unit: _Unit) -> None:
        random_ = self.random
        block = self._block(unit)
        if random_() < 0.12:
            self._write(block, _SIG_STANCE, (self._tick(), 6, self._roll(1, 5)))
        if random_() < 0.15:
            self._write(block, _SIG_FACING, (self._tick(), 1, self._roll(0, 5)))
        if unit.weapon_id and random_() < 0.04:
            self._write(block, _SIG_WEAPON, (self._tick(), 3, unit.weapon_id))
        self._move(block, int(random_() * 4))
        if (self.unpicked or self.drops) and random_() < 0.25:
            self._pickup(unit)
        if self._heal(unit):
            return

        victim = self._due_victim(unit) if random_() < 0.4 else None
        if victim is not None:
            self._attack(unit, victim, lethal=True)
            return
        target = self._random_enemy(unit)
        if target is not None and random_() < 0.85:
            self._attack(unit, target, lethal=False)
        elif random_() < 0.3:
            self._shoot_cell(unit)

    def _monster_chunk(self, unit: _Unit) -> None:
        block = self._block(unit)
        self._move(block, self._roll(1, 4))
        if self.random() < 0.1:
            self._write(block, _SIG_FACING, (self._tick(), 1, self._roll(0, 5)))
        if self.random() >= 0.45:
            return
        victim = self._due_victim(unit) if self.random() < 0.5 else None
        if victim is not None:
            self._attack(unit, victim, lethal=True)
            return
        target = self._random_enemy(unit)
        if target is not None:
            self._attack(unit, target, lethal=False)

    def _escape_due(self, unit: _Unit) -> bool:
        return (
            unit.fate == "escape" and unit.fate_turn == self.turn
            and unit.alive and not unit.escaped
        )

    def _act(self, unit: _Unit) -> None:
        if unit.is_monster:
            self._monster_chunk(unit)
        else:
            self._player_chunk(unit)

    def _in_fight(self, unit: _Unit) -> bool:
        # Alive, not escaped, and joined: in its join turn only once its block exists.
        if not unit.alive or unit.escaped:
            return False
        return unit.join_turn < self.turn or unit in self.blocks

    def _settle_fates(self) -> None:
        # Deaths due in this turn that no chunk carried out, then escapes, which
        # come after the unit's last action of the turn.
        random_ = self.random
        for victim in self.due_deaths:
            if not victim.alive or victim.escaped or victim.join_turn >= self.turn:
                continue
            if not victim.is_monster and random_() < 0.02:
                self._self_kill(victim)
                continue
            if random_() < 0.03:
                # A death without a kill credit, as from poison.
                self._die(victim, self._tick())
                continue
            killers = [enemy for enemy in victim.enemies if self._in_fight(enemy)]
            if killers:
                killer = killers[int(random_() * len(killers))]
                self._attack(killer, victim, lethal=True)
        for unit in self.units:
            if self._escape_due(unit) and self._in_fight(unit):
                self._escape_now(unit)

    def _play_turn(self, turn: int, budget: float) -> None:
        self.turn = turn
        self.frame = 0
        self.blocks = {}
        self.block_order = []
        start_size = self.size
        self.due_deaths = [
            unit for unit in self.units if unit.fate == "die" and unit.fate_turn == turn
        ]
        self._poison_ticks()

        actors = [
            unit for unit in self.units
            if unit.alive and not unit.escaped and unit.join_turn <= turn
        ]
        self.rng.shuffle(actors)
        # When most units are dead or escaped, the rest act longer so the turn
        # still fills its share of the size.
        cap_scale = min(3.0, max(1.0, len(self.units) / max(1, len(actors))))
        player_cap = PLAYER_ACTION_CAP * cap_scale
        monster_cap = MONSTER_ACTION_CAP * cap_scale
        for pass_index in range(round(MAX_PASSES * cap_scale)):
            acted = False
            for unit in actors:
                if not unit.alive or unit.escaped:
                    continue
                # A unit joining now acts in its join turn even when the byte
                # budget is spent. Due kills and escapes happen in _settle_fates.
                required = pass_index == 0 and unit.join_turn == turn
                if self.size - start_size >= budget and not required:
                    continue
                block = self.blocks.get(unit)
                cap = monster_cap if unit.is_monster else player_cap
                if block is not None and len(block.parts) >= cap:
                    continue
                self._act(unit)
                acted = True
            if self.size - start_size >= budget or not acted:
                break
        if not self.block_order and actors:
            # Every TURN element holds at least one USER block.
            self._act(actors[0])

        self._settle_fates()
        if turn == self.turns:
            self._closing_notes()
        self.turn_texts.append(self._render_turn(turn))

    def _closing_notes(self) -> None:
        # Rank (t=19) and reputation (t=21) changes at the end of the fight.
        rank_share = 0.15 if self.kind == "pve" else 0.5
        for block in self.block_order:
            unit = block.unit
            if unit.is_monster or not unit.alive or unit.escaped:
                continue
            if self.random() < rank_share:
                self._write(block, _SIG_MOVE, (self._tick(), 19))
            if self.random() < 0.2:
                self._write(block, _SIG_MOVE, (self._tick(), 21))

    def _opening_tag(self, block: _Block) -> str:
        if block.opening is not None:
            return block.opening
        unit = block.unit
        tag = self.markup.tag
        # Dead units carry HP="0", and some living ones an HP snapshot.
        snapshot = None
        if not unit.alive:
            snapshot = 0
        elif self.random() < 0.1:
            snapshot = unit.hp

        if block.join_frame is not None:
            if snapshot is None:
                return tag(_SIG_JOIN, (unit.xml_login, block.join_frame))
            return tag(_SIG_JOIN_HP, (unit.xml_login, block.join_frame, snapshot))
        if snapshot is None:
            return tag(_SIG_USER, (unit.xml_login,))
        return tag(_SIG_USER_HP, (unit.xml_login, snapshot))

    def _render_turn(self, turn: int) -> str:
        lines = [self.markup.tag(_SIG_TURN, (turn,))]
        for block in self.block_order:
            opening = self._opening_tag(block)
            lines.append(f"{opening}{block.children}{''.join(block.parts)}</USER>")
        lines.append("</TURN>")
        return self.markup.newline.join(lines)

    # Battle block --------------------------------------------------------------

    def _unit_attributes(
        self, unit: _Unit, hp: int | None = None
    ) -> tuple[list[str], list]:
        keys = ["login", "battleid", "level", "side"]
        values: list = [unit.xml_login, self.battle_id, unit.level, unit.side]
        if unit.is_monster:
            keys += ["man", "img"]
            values += [unit.man, unit.img]
            if unit.spec_def:
                keys.append("def")
                values.append(unit.spec_def)
            if unit.spec_color:
                keys.append("color")
                values.append(unit.spec_color)
        else:
            if unit.clan is not None:
                keys.append("clan")
                values.append(_escape(unit.clan))
            keys += ["pro", "rank_points", "pve_points", "man"]
            values += [unit.pro, unit.rank_points, unit.pve_points, unit.man]
        keys += ["HP", "maxHP", "bx", "by"]
        values += [unit.max_hp if hp is None else hp, unit.max_hp, unit.bx, unit.by]
        return keys, values

    def _equipment_tags(self, unit: _Unit) -> list[str]:
        tag = self.markup.tag
        tags = []
        for item_id, code, name, slot, details in unit.equipment:
            values = (item_id, code, _escape(name), slot)
            if details is None:
                tags.append(tag(_SIG_EQUIPMENT, values))
            else:
                tags.append(tag(_SIG_EQUIPMENT_DETAILS, values + details))
        return tags

    def _render_roster(self, final_hp: bool) -> list[str]:
        tag = self.markup.tag
        lines = []
        for unit in self.roster:
            keys, values = self._unit_attributes(unit, unit.hp if final_hp else None)
            if unit.equipment:
                opening = tag(("USER", tuple(keys), ">"), tuple(values))
                lines.append(f"{opening}{''.join(self._equipment_tags(unit))}</USER>")
            else:
                lines.append(tag(("USER", tuple(keys), "/>"), tuple(values)))
        return lines

    def _render_header(self, duration: int, battle_type: str, x: int, y: int) -> str:
        keys = ["t", "t2", "turn", "f", "note"]
        end = self.start + duration
        values: list = [40, end, self.turns, battle_type, f"{x},{y},{self.start}"]
        if self.random() < 0.6:
            keys.append("new_battle")
            values.append(1)
        if self.random() < 0.2:
            keys.append("cl")
            values.append(0)
        return self.markup.tag(("BATTLE", tuple(keys), ">"), tuple(values))

    def _render_objects(self) -> list[str]:
        tag = self.markup.tag
        lines = []
        for item_id, code, name, quantity, bx, by in self.map_objects:
            if self.random() < 0.04:
                values = (item_id, code, _escape(name), bx, by)
                lines.append(tag(_SIG_OBJECT_NO_COUNT, values))
            else:
                values = (item_id, code, _escape(name), quantity, bx, by)
                lines.append(tag(_SIG_OBJECT, values))
        return lines

    # Assembly ------------------------------------------------------------------

    def build(self) -> GeneratedLog:
        rng = self.rng
        self._make_units()
        self._plan_fates()
        self._make_objects()

        duration = _draw_duration(rng, self.turns)
        self.end = self.start + duration
        battle_type = _draw_battle_type(rng, self.kind)
        x, y = rng.randint(-60, 60), rng.randint(-60, 60)
        header = self._render_header(duration, battle_type, x, y)
        map_lines = [self.markup.tag(_SIG_MAP, (row,)) for row in self.map_rows]
        roster_lines = self._render_roster(final_hp=False)
        object_lines = self._render_objects()
        self.size = self.measure(header)
        for line in (*map_lines, *roster_lines, *object_lines):
            self.size += self.measure(line) + 1

        target = min(MAX_TARGET_SIZE, self.shape.target_size)
        weights = [rng.uniform(0.6, 1.4) for _ in range(self.turns)]
        for turn in range(1, self.turns + 1):
            remaining = max(0.0, target - self.size)
            share = weights[turn - 1] / sum(weights[turn - 1:])
            self._play_turn(turn, remaining * share)

        if rng.random() < 0.06:
            # Some logs write the roster at the end of the fight, with final HP.
            roster_lines = self._render_roster(final_hp=True)

        data = self._assemble([header, *map_lines, *roster_lines, *object_lines])
        truth = self._truth(duration, battle_type, x, y)
        return GeneratedLog(self.battle_id, data, truth)

    def _assemble(self, battle_lines: list[str]) -> bytes:
        rng = self.rng
        newline = self.markup.newline
        body = newline.join(battle_lines)
        turns = newline.join(self.turn_texts)
        if rng.random() < 0.03:
            # A few logs nest the TURNs inside BATTLE.
            battle_copy = f"{body}{newline}{turns}{newline}</BATTLE>"
        else:
            battle_copy = f"{body}{newline}</BATTLE>{newline}{turns}"
        copies = [battle_copy, battle_copy] if self.duplicate else [battle_copy]
        text = newline.join(copies)
        if rng.random() < 0.85:
            text = f"<BLOOK>{text}{newline}</BLOOK>"
        if rng.random() < 0.5:
            text += newline
        return text.encode("utf-8")

    def _truth(self, duration: int, battle_type: str, x: int, y: int) -> dict:
        flags = ["duplicated_log"] if self.duplicate else []
        map_ids = {item[0] for item in self.map_objects}
        pickup_ids = {pickup[1] for pickup in self.pickups if pickup[1] is not None}
        if map_ids and not pickup_ids <= map_ids:
            flags.append("unmatched_pickups")

        ordered = self.roster + self.appeared
        participants = [self._participant_truth(unit) for unit in ordered]
        return {
            "battle": {
                "id": self.battle_id,
                "server": SERVER,
                "start": _iso(self.start),
                "end": _iso(self.start + duration),
                "turns": self.turns,
                "type": battle_type,
                "x": x,
                "y": y,
                "flags": sorted(flags),
            },
            "participants": participants,
            "loot": self._loot_truth(map_ids),
            "roster": {unit.login: self._roster_truth(unit) for unit in ordered},
        }

    @staticmethod
    def _participant_truth(unit: _Unit) -> dict:
        return {
            "login": unit.login,
            "side": unit.side,
            "level": unit.level,
            "is_monster": unit.is_monster,
            "survived": unit.alive,
            "escaped": unit.escaped,
            "joined_turn": unit.join_turn,
            "kills_monsters": unit.kills_monsters,
            "kills_players": unit.kills_players,
            "damage_dealt": unit.dealt,
            "damage_taken": unit.taken,
            "healed": unit.healed,
        }

    @staticmethod
    def _roster_truth(unit: _Unit) -> dict:
        # The roster attributes that tzr-ingest stores for the unit, as
        # stored: clan unescaped, rank points as a number.
        if unit.is_monster:
            return {
                "level": unit.level,
                "clan": None,
                "profession": None,
                "creature_type": unit.man,
                "rank_points": None,
                "pve_points": None,
                "monster_kind": unit.family.kind,
                "elite": bool(unit.spec_def or unit.spec_color or "_" in unit.login),
            }
        return {
            "level": unit.level,
            "clan": unit.clan,
            "profession": unit.pro,
            "creature_type": unit.man,
            "rank_points": float(unit.rank_points),
            "pve_points": unit.pve_points,
            "monster_kind": None,
            "elite": False,
        }

    def _loot_truth(self, map_ids: set[int]) -> list[dict]:
        ordered = self.roster + self.appeared
        position = {unit: index for index, unit in enumerate(ordered)}
        seen: set[tuple[int, int]] = set()
        totals: dict[tuple[int, str], int] = {}
        for unit, item_id, name, count in self.pickups:
            if item_id is None or (map_ids and item_id not in map_ids):
                continue
            key = (position[unit], item_id)
            if key in seen:
                continue
            seen.add(key)
            total_key = (position[unit], name)
            totals[total_key] = totals.get(total_key, 0) + (count if count else 1)
        return [
            {"login": ordered[index].login, "item": name, "qty": quantity}
            for (index, name), quantity in sorted(totals.items())
        ]


# ---------------------------------------------------------------------------
# Public API.


def _pick_kind(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, [weights[name] for name in names])[0]


def _kind_weights(
    kinds: Mapping[str, float] | Iterable[str] | str | None,
) -> dict[str, float]:
    if kinds is None:
        weights = dict(DEFAULT_KIND_WEIGHTS)
    elif isinstance(kinds, str):
        weights = {kinds: 1.0}
    elif isinstance(kinds, Mapping):
        weights = {name: float(weight) for name, weight in kinds.items()}
    else:
        weights = {name: DEFAULT_KIND_WEIGHTS.get(name, 0.0) for name in kinds}
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise ValueError(_invalid_kind_message(", ".join(unknown)))
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("kinds must give at least one battle kind a positive weight")
    return weights


def generate_log(
    rng: random.Random,
    battle_id: int,
    *,
    kind: str | None = None,
    start: int | None = None,
    duplicate: bool = False,
) -> GeneratedLog:
    """Generate one battle log and its expected parse.

    ``kind`` is "pve", "pvp" or "mixed", and None draws one with the weights
    of :data:`DEFAULT_KIND_WEIGHTS`. ``start`` is the battle start in Unix
    seconds, and None draws one from the last quarter of 2025. With
    ``duplicate`` the log repeats its BATTLE block and TURNs once, byte for
    byte, and the truth carries the flag "duplicated_log". Raises ValueError
    for an unknown kind.
    """
    if kind is None:
        kind = _pick_kind(rng, DEFAULT_KIND_WEIGHTS)
    elif kind not in KINDS:
        raise ValueError(_invalid_kind_message(kind))
    if start is None:
        start = rng.randrange(PERIOD_START, PERIOD_END - MAX_DURATION - 1)
    return _Battle(rng, battle_id, kind, start, duplicate).build()


def log_path(
    directory: Path | str,
    battle_id: int,
    *,
    layout: str = "sharded",
    compressed: bool = False,
) -> Path:
    """Return where :func:`write_corpus` stores a battle's log."""
    name = f"{battle_id}.tzb.gz" if compressed else f"{battle_id}.tzb"
    if layout == "sharded":
        return Path(directory) / str(battle_id // SHARD_SIZE) / name
    if layout == "flat":
        return Path(directory) / name
    raise ValueError(f"invalid layout {layout!r}, expected 'sharded' or 'flat'")


def write_corpus(
    directory: Path | str,
    count: int,
    *,
    seed: int = 0,
    first_id: int = 4_000_000,
    layout: str = "sharded",
    gzip_share: float = 0.0,
    duplicate_share: float = 0.02,
    kinds: Mapping[str, float] | Iterable[str] | str | None = None,
    truth: bool = False,
    players: int | None = None,
    bots: int = 0,
    clans: int | None = None,
    interval: float | None = None,
) -> list[CorpusFile]:
    """Write ``count`` logs with ids ``first_id`` onwards under ``directory``.

    Each log is ``<id>.tzb``, or ``<id>.tzb.gz`` for a ``gzip_share`` fraction
    of them, either in ``<directory>/<id // 50000>/`` ("sharded") or directly
    in ``directory`` ("flat"). A ``duplicate_share`` fraction repeat their
    battle. ``kinds`` is a mapping of kind to weight, or kind names drawn with
    their default weights. Battle starts grow with the id.

    Without ``players``, every battle has new players, starts are spread
    over the last quarter of 2025, and a log's bytes depend only on ``seed``
    and its id.

    With ``players`` (at least 1), the battles are played by a
    :class:`~pipelines.battlelogs.population.Population` of that many human
    players, ``bots`` bots and ``clans`` clans (default about players / 8,
    at least 2 and at most ``players``), drawn from ``seed``. Starts begin
    on 2025-10-01 (UTC), come ``interval`` seconds apart on average
    (default 60) and run past the end of 2025 when ``count`` needs it.
    Each bot adds a solo PvE battle 3-8 s after its previous battle ends,
    so bots make starts denser. When no human is ready, the battle waits
    for one, which makes starts sparser. A PvP or mixed battle that finds
    players for only one side becomes PvE. A log's bytes then depend on
    ``seed``, the population options, ``kinds`` and every earlier battle,
    and ``population.json`` lists the clans and members.

    With ``truth`` the expected parses go to ``<directory>/truth.jsonl``, one
    JSON object a line in id order. Only one log is held in memory at a time.
    Raises ValueError for invalid arguments.
    """
    if count < 0:
        raise ValueError(f"count must be zero or more, not {count}")
    shares = (("gzip_share", gzip_share), ("duplicate_share", duplicate_share))
    for name, share in shares:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, not {share}")
    log_path(directory, first_id, layout=layout)  # rejects an invalid layout early
    weights = _kind_weights(kinds)
    population = None
    if players is None:
        if bots or clans is not None or interval is not None:
            raise ValueError(
                "bots, clans and interval need a population: pass players "
                "(--players on the command line), 1 or more"
            )
    else:
        if interval is None:
            interval = DEFAULT_INTERVAL
        check_population_options(players, bots, clans, interval)
        population = Population(seed, players, bots, clans)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if population is None:
        logs = _spread_logs(count, seed, first_id, gzip_share, duplicate_share, weights)
    else:
        population_json = {**population.to_json(), "interval": interval}
        (directory / POPULATION_FILE).write_text(
            json.dumps(population_json, ensure_ascii=False, indent=1) + "\n",
            encoding="utf-8",
        )
        schedule = Schedule(population, seed, interval, PERIOD_START)
        logs = _scheduled_logs(
            schedule, count, seed, first_id, gzip_share, duplicate_share, weights
        )

    written: list[CorpusFile] = []
    truth_file = (directory / TRUTH_FILE).open("w", encoding="utf-8") if truth else None
    try:
        for log, compressed in logs:
            path = log_path(
                directory, log.battle_id, layout=layout, compressed=compressed
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = log.data
            if compressed:
                payload = gzip.compress(log.data, compresslevel=6, mtime=0)
            path.write_bytes(payload)
            if truth_file is not None:
                truth_file.write(json.dumps(log.truth, ensure_ascii=False) + "\n")
            written.append(CorpusFile(log.battle_id, path))
    finally:
        if truth_file is not None:
            truth_file.close()
    return written


def _spread_logs(
    count: int,
    seed: int,
    first_id: int,
    gzip_share: float,
    duplicate_share: float,
    weights: dict[str, float],
) -> Iterator[tuple[GeneratedLog, bool]]:
    # Yields each log and whether to compress it, with one-off players and
    # starts spread evenly over the period.
    span = PERIOD_END - MAX_DURATION - 1 - PERIOD_START
    for index in range(count):
        battle_id = first_id + index
        rng = random.Random(f"tzb-corpus:{seed}:{battle_id}")
        compressed = rng.random() < gzip_share
        duplicate = rng.random() < duplicate_share
        kind = _pick_kind(rng, weights)
        jitter = rng.randint(-900, 900)
        offset = span * index // max(count, 1) + jitter
        start = PERIOD_START + min(span, max(0, offset))
        log = generate_log(rng, battle_id, kind=kind, start=start, duplicate=duplicate)
        yield log, compressed


def _scheduled_logs(
    schedule: Schedule,
    count: int,
    seed: int,
    first_id: int,
    gzip_share: float,
    duplicate_share: float,
    weights: dict[str, float],
) -> Iterator[tuple[GeneratedLog, bool]]:
    # Yields each log and whether to compress it, with the starts and players
    # that the schedule gives. Bots play PvE only.
    for index in range(count):
        battle_id = first_id + index
        rng = random.Random(f"tzb-population:{seed}:{battle_id}")
        compressed = rng.random() < gzip_share
        duplicate = rng.random() < duplicate_share
        cast = schedule.next_cast()
        kind = "pve" if cast.lead.bot else _pick_kind(rng, weights)
        battle = _Battle(rng, battle_id, kind, cast.start, duplicate, cast)
        log = battle.build()
        survivors = [
            unit.member for unit in battle.units
            if unit.member is not None and unit.alive
        ]
        schedule.finish(cast, battle.kind, battle.end, survivors)
        yield log, compressed


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tzr-corpus",
        description="Write synthetic TimeZero battle logs (.tzb) for tests and "
        "benchmarks.",
    )
    add = parser.add_argument
    add("directory", type=Path, help="output directory (created if missing)")
    add("--count", type=int, default=100, help="number of logs to write (default 100)")
    add(
        "--seed", type=int, default=0,
        help="random seed (the same seed writes the same bytes)",
    )
    add(
        "--first-id", type=int, default=4_000_000,
        help="battle id of the first log (default 4000000); corpora that share ids "
        "replace each other's battles when loaded into one database",
    )
    add(
        "--layout", choices=("sharded", "flat"), default="sharded",
        help="sharded writes <dir>/<id // 50000>/<id>.tzb, flat writes <dir>/<id>.tzb",
    )
    add(
        "--gzip-share", type=float, default=0.0,
        help="fraction of logs written gzip-compressed (default 0)",
    )
    add(
        "--duplicate-share", type=float, default=0.02,
        help="fraction of logs that repeat their battle (default 0.02)",
    )
    add(
        "--kind", action="append", choices=KINDS, dest="kinds",
        help="battle kind to draw, repeatable (default: pve 80%%, pvp 15%%, mixed 5%%)",
    )
    add(
        "--truth", action="store_true",
        help=f"also write the expected parses to {TRUTH_FILE}",
    )

    population = parser.add_argument_group(
        "population",
        "Recurring players instead of new ones in every battle. --players enables "
        f"it; the members go to {POPULATION_FILE}, and a log's bytes then also "
        "depend on the options below and on every earlier battle.",
    )
    population.add_argument(
        "--players", type=int, metavar="N",
        help="number of human players (1 or more)",
    )
    population.add_argument(
        "--bots", type=int, default=0, metavar="N",
        help="number of bots, which play solo PvE nearly round the clock (default 0)",
    )
    population.add_argument(
        "--clans", type=int, metavar="N",
        help="number of clans, at most --players (default players / 8, at least 2)",
    )
    population.add_argument(
        "--interval", type=float, metavar="SECONDS",
        help=f"mean seconds between the starts of players' battles (default "
        f"{DEFAULT_INTERVAL:g}); bots add battles of their own",
    )

    return parser


def main(argv: list[str] | None = None) -> int:
    """Write a synthetic corpus from the command line and print one summary line."""
    parser = _argument_parser()
    args = parser.parse_args(argv)
    if args.first_id < 1:
        parser.error(f"--first-id must be a positive battle id, got {args.first_id}")
    if args.count < 0:
        parser.error(f"--count must not be negative, got {args.count}")
    if args.directory.exists() and not args.directory.is_dir():
        parser.error(f"{args.directory} exists and is not a directory")

    began = time.perf_counter()
    try:
        files = write_corpus(
            args.directory,
            args.count,
            seed=args.seed,
            first_id=args.first_id,
            layout=args.layout,
            gzip_share=args.gzip_share,
            duplicate_share=args.duplicate_share,
            kinds=args.kinds,
            truth=args.truth,
            players=args.players,
            bots=args.bots,
            clans=args.clans,
            interval=args.interval,
        )
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"cannot write to {args.directory}: {error}")
    elapsed = time.perf_counter() - began
    total_bytes = sum(file.path.stat().st_size for file in files)
    print(
        f"wrote {len(files)} files, {total_bytes / 1e6:.1f} MB on disk, "
        f"to {args.directory} in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
