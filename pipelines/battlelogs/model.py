"""In-memory model of one parsed battle, and the game's code tables."""

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache


# Monster family codes, matched against the letters that follow ``$`` in a
# monster login (``$rat146`` -> ``rat``). Longer codes are tried first, so
# ``stich`` wins over ``sti`` and ``scrp`` over ``scr``; aliases map to one code.
MONSTER_KINDS = {
    "bmi": "mine",
    "rat": "rat",
    "sti": "stich",
    "pco": "robocop",
    "pcb": "cyber-guard",
    "std": "witch-jelly",
    "vzz": "vzzik",
    "tur": "turret",
    "dev": "decoy",
    "bll": "ball",
    "dog": "dingo",
    "srg": "sergeant",
    "enm": "dummy enemy",
    "gek": "gecko",
    "rbt": "r2-d2",
    "robot": "mechanoid",
    "scr": "scorpion",
    "wrm": "worm",
    "spd": "arachnid",
    "zmb": "possessed",
    "rdr": "radar",
    "alg": "saboteur",
    "als": "stormtrooper",
    "alb": "punisher",
    "erg": "ergo",
    "mts": "mantis",
    "crs": "crusher",
    "crm": "little crusher",
    "cdv": "cage",
    "hst": "hostage",
    "col": "lab assistant",
    "fgh": "warrior",
    "sha": "shaman",
    "pjm": "psi-jammer",
    "rjm": "jammer",
    "rng": "ranger",
}
MONSTER_KIND_ALIASES = {"stich": "sti", "scrp": "scr"}
UNKNOWN_MONSTER_KIND = "unknown"

RESOURCE_NAMES = frozenset({
    "Gems", "Metals", "Organic", "Polymers", "Precious metals",
    "Radioactive materials", "Venom", "Silicon",
})
MONSTER_PART_NAMES = frozenset({
    "Rat Brain", "Rat Eyes", "Rat Fang", "Rat Skin",
    "Stich Blood", "Stich Bone Marrow", "Stich Claw", "Stich Meat", "Stich Skin",
    "Vzzik Egg Fragments", "Vzzik Shell Powder", "Vzzik Wings",
    "Cursed Brain", "Cursed Paw", "Cursed Skin", "Water crystal",
    "WitchJelly Acid", "WitchJelly Bille", "WitchJelly Enzyme",
})

# Attack types (the ``type`` of a t=5 action) that apply an item or a skill to
# the acting unit itself, so a heal without a ``login`` target heals the actor.
SELF_ATTACK_TYPES = frozenset({"13", "29"})

# Action codes (the ``t`` attribute of ``<a>``).
ACTION_ATTACK = 5
ACTION_DEATH = 7
ACTION_PICKUP = 8
ACTION_ESCAPE = 9
ACTION_SPECIAL = 20
SPECIAL_CODE_KILL = 7


# Longest first, so that a longer code wins over its own prefix.
_KIND_PREFIXES = sorted(
    [(alias, code) for alias, code in MONSTER_KIND_ALIASES.items()]
    + [(code, code) for code in MONSTER_KINDS],
    key=lambda pair: len(pair[0]),
    reverse=True,
)
_LEADING_LETTERS_RE = re.compile(r"[A-Za-z]*")


@lru_cache(maxsize=4096)
def _kind_of_word(word: str) -> str:
    for prefix, code in _KIND_PREFIXES:
        if word.startswith(prefix):
            return code
    return UNKNOWN_MONSTER_KIND


def monster_kind(login: str) -> str:
    """Return the family code of a ``$``-prefixed monster login."""
    word = _LEADING_LETTERS_RE.match(login, 1).group().lower()
    return _kind_of_word(word)


def loot_category(name: str | None) -> str:
    if name in RESOURCE_NAMES:
        return "resource"
    if name in MONSTER_PART_NAMES:
        return "monster_part"
    return "other"


class Participant:
    """A unit in a battle, player or monster, as its USER tags describe it.

    Totals over the battle (damage, kills, deaths by action) are computed from
    the action columns when the battle is shaped into frames.
    """

    __slots__ = (
        "pid", "login", "in_roster", "is_monster", "side", "level", "clan",
        "profession", "creature_type", "rank_points", "pve_points", "max_hp",
        "image", "monster_kind", "elite", "elite_spec", "hp_zero_turn",
        "joined_turn", "joined_frame",
    )

    def __init__(self, pid: int, login: str, in_roster: bool):
        self.pid = pid
        self.login = login
        self.in_roster = in_roster
        self.is_monster = login.startswith("$")
        self.side = None
        self.level = None
        self.clan = None
        self.profession = None
        self.creature_type = None
        self.rank_points = None
        self.pve_points = None
        self.max_hp = None
        self.image = None
        self.monster_kind = monster_kind(login) if self.is_monster else None
        self.elite = self.is_monster and "_" in login
        self.elite_spec = None
        self.hp_zero_turn = None
        self.joined_turn = 0
        self.joined_frame = None


@dataclass
class MapObject:
    """An item lying on the battlefield (an ``<O>`` with ``bx``/``by``)."""

    item_id: int
    template: str | None
    name: str | None
    count: int | None


@dataclass
class Battle:
    """One battle as read from its log, before it is shaped into frames.

    Actions are kept as raw columns in log order, because converting them
    one by one in Python would cost more than parsing the XML:
    ``action_codes`` and ``action_frames`` contain every action's ``t`` and
    ``sf`` strings; ``segments`` contains ``(first action index, turn, actor
    pid)`` for each run of actions that one unit made in one turn. Details
    exist only for the actions that have them, keyed by action index:
    ``attacks`` rows are ``(index, type, target pid, xy, HP)``, ``specials``
    rows ``(index, code, target pid)``, ``values`` rows ``(index, direct,
    weapon or run value)`` and ``pickups`` rows ``(index, actor pid, item id,
    name, qty)``.
    """

    battle_id: int
    started_at: int | None = None
    ended_at: int | None = None
    turns: int | None = None
    turns_seen: int = 0
    type: str | None = None
    x: int | None = None
    y: int | None = None
    turn_seconds: int | None = None
    map_rows: list[str] = field(default_factory=list)
    map_hash: str | None = None
    participants: list[Participant] = field(default_factory=list)
    action_codes: list = field(default_factory=list)
    action_frames: list = field(default_factory=list)
    segments: list[tuple] = field(default_factory=list)
    attacks: list[tuple] = field(default_factory=list)
    specials: list[tuple] = field(default_factory=list)
    values: list[tuple] = field(default_factory=list)
    pickups: list[tuple] = field(default_factory=list)
    map_objects: dict[int, MapObject] = field(default_factory=dict)
    copies: int = 1
    flags: set[str] = field(default_factory=set)
    unknown: Counter = field(default_factory=Counter)
    bad_values: int = 0

    @property
    def players(self) -> int:
        return sum(1 for p in self.participants if not p.is_monster)

    @property
    def monsters(self) -> int:
        return sum(1 for p in self.participants if p.is_monster)
