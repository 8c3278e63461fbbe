"""Parse a TimeZero battle log (``.tzb``) with a hardened lxml parser.

The log is a ``<BLOOK>`` document or a bare fragment: ``<BATTLE>`` (the header,
``<MAP>`` rows, the roster of ``<USER>`` units and ``<O>`` map objects)
followed by sibling ``<TURN>`` elements, or with the TURNs nested in BATTLE.
Each TURN holds one ``<USER>`` block per acting unit, and that block owns the
unit's ``<a>`` actions; a ``login`` on an action names the target.

The parser never builds a tree: lxml's target interface hands each start tag
to :class:`_LogTarget`, which fills a :class:`~pipelines.battlelogs.model.Battle`.
Entity expansion, DTDs and network access are off, and a DOCTYPE is rejected
before parsing, so an XML bomb or an external entity never reaches libxml2's
entity code. Depth is capped at :data:`MAX_DEPTH`; size is capped by the reader.

Decisions on irregular logs:

* a log holding the same battle more than once (byte-identical copies of the
  BATTLE block and its TURNs) is parsed once and flagged ``duplicated_log``;
  copies that differ are rejected as ``conflicting_copies``;
* a truncated log (elements still open at the end of the data) is rejected as
  ``truncated``: a partial battle would report the wrong survivors and kills,
  and the collector can fetch the log again, which then replaces nothing;
* unknown elements and attributes are counted per name and never fatal;
* a number that does not parse is stored as NULL and flagged ``bad_values``.
"""

import hashlib
import re
from logging import getLogger

from lxml import etree

from pipelines.battlelogs.model import (
    ACTION_ATTACK,
    ACTION_DEATH,
    ACTION_ESCAPE,
    ACTION_PICKUP,
    ACTION_SPECIAL,
    SELF_ATTACK_TYPES,
    SPECIAL_CODE_KILL,
    Battle,
    MapObject,
    Participant,
)
from pipelines.battlelogs.read import Rejected


_log = getLogger(__name__)

#: Deepest element nesting accepted, counting the synthetic wrapper element.
#: Real logs nest at most six levels (wrapper, BLOOK, BATTLE, TURN, USER, a).
MAX_DEPTH = 12

_WRAPPER = "TZRLOG"
_WRAPPER_OPEN = b"<TZRLOG>"
_WRAPPER_CLOSE = b"</TZRLOG>"
_XML_DECLARATION_RE = re.compile(rb"^\s*<\?xml[^>]*\?>")
_TRAILER_RE = re.compile(rb"\s*(</BLOOK\s*>\s*)?")

KNOWN_ELEMENTS = frozenset({_WRAPPER, "BLOOK", "BATTLE", "MAP", "USER", "O", "TURN", "a"})
_STATUS_ATTRIBUTES = {
    base + suffix
    for base in "DPNHCZOBVISE"
    for suffix in ("", "i", "2")
} | {
    "OD", "Ill", "N1", "N12", "dp_eff", "damageX", "psy", "psyi", "dx_p",
    "dx_p2", "dx_s", "dx_s2", "dx_OD", "dx_OD2",
}
KNOWN_ATTRIBUTES = {
    "BATTLE": frozenset({"t", "t2", "turn", "f", "note", "new_battle", "cl"}),
    "USER": frozenset({
        "login", "battleid", "level", "side", "clan", "pro", "rank_points",
        "pve_points", "man", "HP", "maxHP", "bx", "by", "img", "def", "color",
        "sf", "maxPsy", "ODratio", "group", "virus", "ne", "ne2", "nark", "gluk",
    }) | _STATUS_ATTRIBUTES,
    "a": frozenset({
        "sf", "t", "type", "login", "xy", "HP", "direct", "run", "weapon",
        "code", "id", "txt", "count",
    }),
    "O": frozenset({
        "id", "name", "txt", "slot", "count", "bx", "by", "massa", "quality",
        "maxquality", "damage", "shot", "OD", "type", "calibre", "section", "drop",
    }),
    "TURN": frozenset({"turn"}),
    "MAP": frozenset({"v"}),
    "BLOOK": frozenset(),
    _WRAPPER: frozenset(),
}

# The attribute that carries an action's one numeric detail, by action code:
# facing for a turn, the weapon for taking one in hand, the stance for t=6.
_VALUE_ATTRIBUTE = {1: "direct", 3: "weapon", 6: "run"}

SMALLINT_MAX = 2**15 - 1
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
#: Unix times accepted for battle start and end: 1970 to 2106.
TIME_MAX = 2**32

_hp_cache: dict[str, tuple] = {}


def _decoded(value):
    # With entity resolution off, libxml2 hands every literal "&" in an
    # attribute value to SAX targets as "&#38;" (lxml 6.1, libxml2 2.14), while
    # "&lt;", "&quot;" and character references arrive decoded. No other
    # sequence can produce "&#38;", so replacing it back is exact.
    if value is None or "&" not in value:
        return value
    return value.replace("&#38;", "&")
_NO_HIT = (None, None, None, None, None)


def parse_hit(descriptor: str) -> tuple:
    """Split an attack's ``HP`` descriptor into its parts.

    Returns ``(hit_kind, amount, effect_code, effect_amount, heal)``:

    * ``"n"`` and ``"k:n"``: a hit of n of kind k (0 normal, 1 critical,
      2 armour-piercing); a negative n is a heal of -n, with amount None;
    * ``"k:Ln"``: effect or element damage only (A poison tick, B burn, S
      shock, E energy), so amount is None and the effect carries n;
    * ``"k:n:Lm"``: a hit of n that also applies effect L of strength m.

    Raises ValueError for any other shape.
    """
    cached = _hp_cache.get(descriptor)
    if cached is not None:
        return cached

    parts = descriptor.split(":")
    if len(parts) == 1:
        hit_kind, rest = 0, parts
    elif len(parts) in (2, 3):
        hit_kind, rest = int(parts[0]), parts[1:]
    else:
        raise ValueError(f"HP descriptor {descriptor!r} has {len(parts)} parts")

    amount = effect_code = effect_amount = heal = None
    first = rest[0]
    if first[:1].isalpha():
        if len(rest) != 1:
            raise ValueError(f"HP descriptor {descriptor!r} has an effect before the hit")
        effect_code, effect_amount = first[0], int(first[1:])
    else:
        amount = int(first)
        if len(rest) == 2:
            effect = rest[1]
            if not effect[:1].isalpha():
                raise ValueError(f"HP descriptor {descriptor!r} has no effect letter")
            effect_code, effect_amount = effect[0], int(effect[1:])
    if amount is not None and amount < 0:
        amount, heal = None, -amount

    if not -SMALLINT_MAX <= hit_kind <= SMALLINT_MAX or any(
        number is not None and not -INT_MAX <= number <= INT_MAX
        for number in (amount, effect_amount, heal)
    ):
        raise ValueError(f"HP descriptor {descriptor!r} holds a number out of range")

    result = (hit_kind, amount, effect_code, effect_amount, heal)
    if len(_hp_cache) < 100_000:
        _hp_cache[descriptor] = result
    return result


class _LogTarget:
    """lxml parser target that turns start tags into a :class:`Battle`."""

    def __init__(self):
        self.battle = Battle(battle_id=0)
        self.stack: list[str] = []
        self.log_battle_id: int | None = None
        self.by_login: dict[str, Participant] = {}
        self.in_battle = False
        self.battle_seen = False
        self.turn: int | None = None
        self.actor: Participant | None = None
        self.pickups: set[tuple[int, int]] = set()
        self.seq = 0

    # lxml calls start/end for every element and close at the end.

    def start(self, tag, attrib):
        stack = self.stack
        stack.append(tag)
        if len(stack) > MAX_DEPTH:
            raise Rejected("too_deep", f"elements nest deeper than {MAX_DEPTH} levels")

        known = KNOWN_ATTRIBUTES.get(tag)
        if known is None:
            self.battle.unknown[f"<{tag}>"] += 1
            return
        if not known.issuperset(attrib):
            for name in attrib:
                if name not in known:
                    self.battle.unknown[f"{tag}@{name}"] += 1

        if tag == "a":
            if self.actor is not None:
                self._action(attrib)
        elif tag == "USER":
            self._user(attrib)
        elif tag == "O":
            self._object(attrib)
        elif tag == "TURN":
            self._turn(attrib)
        elif tag == "MAP":
            if self.in_battle and self.turn is None:
                self.battle.map_rows.append(attrib.get("v", ""))
        elif tag == "BATTLE":
            self._battle(attrib)

    def end(self, tag):
        self.stack.pop()
        if tag == "USER":
            self.actor = None
        elif tag == "TURN":
            self.turn = None
        elif tag == "BATTLE":
            self.in_battle = False

    def close(self):
        return self.battle

    # Element handlers.

    def _int(self, value, limit=SMALLINT_MAX, low=None):
        # Numbers go to smallint columns unless a wider limit is given; one
        # out of range is a bad value like one that does not parse.
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            self.battle.bad_values += 1
            return None
        if not (-limit if low is None else low) <= number <= limit:
            self.battle.bad_values += 1
            return None
        return number

    def _battle(self, attrib):
        if self.battle_seen:
            # Copies are removed before parsing, so a second header here means
            # the copies differ in a way the byte comparison could not see.
            raise Rejected("conflicting_copies", "the log holds a second <BATTLE> header")
        self.battle_seen = True
        self.in_battle = True
        battle = self.battle
        battle.ended_at = self._int(attrib.get("t2"), TIME_MAX, low=0)
        battle.turns = self._int(attrib.get("turn"))
        battle.turn_seconds = self._int(attrib.get("t"))
        battle.type = attrib.get("f")
        note = attrib.get("note")
        if note is not None:
            fields = note.split(",")
            if len(fields) == 3:
                battle.x = self._int(fields[0])
                battle.y = self._int(fields[1])
                battle.started_at = self._int(fields[2], TIME_MAX, low=0)
            else:
                battle.bad_values += 1

    def _turn(self, attrib):
        number = self._int(attrib.get("turn"))
        self.battle.turns_seen += 1
        # A TURN without a usable number continues the count, so its events
        # still get an order.
        self.turn = number if number is not None else self.battle.turns_seen

    def _participant(self, login, in_roster):
        participant = self.by_login.get(login)
        if participant is None:
            participant = Participant(len(self.battle.participants), _decoded(login), in_roster)
            self.battle.participants.append(participant)
            self.by_login[login] = participant
        return participant

    def _user(self, attrib):
        login = attrib.get("login")
        if login is None:
            self.battle.unknown["USER without login"] += 1
            return
        turn = self.turn

        battle_id = attrib.get("battleid")
        if battle_id is not None:
            self._check_battle_id(battle_id)

        if turn is None:
            participant = self._participant(login, in_roster=True)
            participant.in_roster = True
            self._roster_attributes(participant, attrib)
            if attrib.get("HP") == "0":
                participant.died_turn = 0
            return

        participant = self.by_login.get(login)
        if participant is None:
            participant = self._participant(login, in_roster=False)
            participant.joined_turn = turn
            participant.joined_frame = self._int(attrib.get("sf"))
            self._roster_attributes(participant, attrib)
        elif "sf" in attrib and participant.joined_turn == 0:
            participant.joined_turn = turn
            participant.joined_frame = self._int(attrib["sf"])
        if attrib.get("HP") == "0" and participant.died_turn is None:
            participant.died_turn = turn
        self.actor = participant

    def _roster_attributes(self, participant, attrib):
        get = attrib.get
        to_int = self._int
        participant.side = to_int(get("side"))
        participant.level = to_int(get("level"))
        participant.clan = _decoded(get("clan")) or None
        participant.profession = to_int(get("pro"))
        participant.creature_type = to_int(get("man"))
        participant.pve_points = to_int(get("pve_points"), BIGINT_MAX)
        participant.max_hp = to_int(get("maxHP"), INT_MAX)
        participant.image = _decoded(get("img"))
        rank_points = get("rank_points")
        if rank_points is not None:
            try:
                participant.rank_points = float(rank_points)
            except ValueError:
                self.battle.bad_values += 1
        if participant.is_monster:
            spec = get("def") or get("color")
            if spec:
                participant.elite = True
                participant.elite_spec = spec

    def _check_battle_id(self, value):
        try:
            battle_id = int(value)
        except ValueError:
            raise Rejected("bad_battle_id", f"battleid={value!r} is not a number") from None
        if not 0 < battle_id <= BIGINT_MAX:
            raise Rejected("bad_battle_id", f"battleid={value!r} is out of range")
        if self.log_battle_id is None:
            self.log_battle_id = battle_id
        elif battle_id != self.log_battle_id:
            raise Rejected(
                "mixed_battle_ids",
                f"the log names battles {self.log_battle_id} and {battle_id}",
            )

    def _object(self, attrib):
        if self.actor is not None or "bx" not in attrib:
            return  # equipment or inventory, not an object on the map
        item_id = self._int(attrib.get("id"), BIGINT_MAX)
        if item_id is None:
            return
        self.battle.map_objects.setdefault(item_id, MapObject(
            item_id=item_id,
            template=_decoded(attrib.get("name")),
            name=_decoded(attrib.get("txt")),
            count=self._int(attrib.get("count"), INT_MAX),
        ))

    def _action(self, attrib):
        get = attrib.get
        actor = self.actor
        action = self._int(get("t"))
        frame = self._int(get("sf"))
        self.seq += 1

        attack_type = target_pid = cell_x = cell_y = value = None
        hit = _NO_HIT
        code = item_id = None

        if action == ACTION_ATTACK:
            attack_type = get("type")
            target_login = get("login")
            if target_login is not None:
                target = self.by_login.get(target_login)
                if target is None:
                    target = self._participant(target_login, in_roster=False)
                    target.joined_turn = self.turn
                    self.battle.flags.add("unlisted_target")
            elif attack_type in SELF_ATTACK_TYPES:
                target = actor
            else:
                target = None
            if target is not None:
                target_pid = target.pid
            cell = get("xy")
            if cell is not None:
                cell_x, _, cell_y = cell.partition(",")
                cell_x, cell_y = self._int(cell_x), self._int(cell_y)
            descriptor = get("HP")
            if descriptor is not None:
                try:
                    hit = parse_hit(descriptor)
                except ValueError:
                    self.battle.bad_values += 1
            if target is not None:
                amount = hit[1]
                if amount is not None and amount > 0:
                    actor.damage_dealt += amount
                    target.damage_taken += amount
                heal = hit[4]
                if heal is not None:
                    target.healed += heal
        elif action == ACTION_SPECIAL:
            code = self._int(get("code"))
            victim_login = get("login")
            if victim_login is not None:
                victim = self._participant(victim_login, in_roster=False)
                target_pid = victim.pid
                if code == SPECIAL_CODE_KILL:
                    self.battle.kills.append((self.seq, self.turn, frame, actor.pid, victim.pid))
                    if victim.is_monster:
                        actor.kills_monsters += 1
                    elif victim is not actor:
                        actor.kills_players += 1
        elif action == ACTION_DEATH:
            if actor.died_turn is None:
                actor.died_turn = self.turn
        elif action == ACTION_PICKUP:
            item_id = self._int(get("id"), BIGINT_MAX)
            if item_id is not None and (actor.pid, item_id) not in self.pickups:
                self.pickups.add((actor.pid, item_id))
                count = self._int(get("count"), INT_MAX)
                qty = count if count else 1
                self.battle.loot.append(
                    [actor.pid, item_id, None, _decoded(get("txt")), qty, self.turn, None]
                )
        elif action == ACTION_ESCAPE:
            if actor.escaped_turn is None:
                actor.escaped_turn = self.turn
        else:
            value_attribute = _VALUE_ATTRIBUTE.get(action)
            if value_attribute is not None:
                value = self._int(get(value_attribute), INT_MAX)

        self.battle.events.append((
            self.turn, frame, self.seq, actor.pid, action, attack_type, target_pid,
            cell_x, cell_y, value, *hit, code, item_id,
        ))


def strip_copies(data: bytes) -> tuple[bytes, int]:
    """Cut a log that repeats its battle down to the first copy.

    Returns the data to parse and the number of copies found. Copies must be
    byte-identical (surrounding white space aside); otherwise the log is
    rejected, because there is no safe way to choose between them.
    """
    positions = []
    start = data.find(b"<BATTLE")
    while start != -1:
        following = data[start + 7:start + 8]
        if following in (b" ", b">", b"/", b"\t", b"\r", b"\n"):
            positions.append(start)
        start = data.find(b"<BATTLE", start + 7)
    if len(positions) < 2:
        return data, 1

    first = data[positions[0]:positions[1]].strip()
    for begin, end in zip(positions[1:-1], positions[2:]):
        if data[begin:end].strip() != first:
            raise Rejected("conflicting_copies", f"copies of the battle at bytes {positions[0]} and {begin} differ")
    last = data[positions[-1]:].strip()
    if not last.startswith(first) or not _TRAILER_RE.fullmatch(last, len(first)):
        raise Rejected(
            "conflicting_copies",
            f"copies of the battle at bytes {positions[0]} and {positions[-1]} differ",
        )
    return data[:positions[0]] + first + last[len(first):], len(positions)


def _new_parser(target):
    return etree.XMLParser(
        target=target,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_log(data: bytes, expected_id: int | None = None) -> Battle:
    """Parse one log's UTF-8 bytes into a :class:`Battle`.

    ``expected_id`` is the battle id from the file name; a log whose
    ``battleid`` differs is rejected as ``battle_id_mismatch``. Raises
    :class:`~pipelines.battlelogs.read.Rejected` for every log that cannot be
    loaded, with a stable reason code.
    """
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise Rejected("dtd_forbidden", "the log declares a DTD or entities, which are never processed")
    declaration = _XML_DECLARATION_RE.match(data)
    if declaration is not None:
        data = data[declaration.end():]
    data, copies = strip_copies(data)

    target = _LogTarget()
    parser = _new_parser(target)
    parser.feed(_WRAPPER_OPEN)
    try:
        parser.feed(data)
    except etree.XMLSyntaxError as error:
        raise Rejected("malformed_xml", _describe(error)) from None
    try:
        parser.feed(_WRAPPER_CLOSE)
        battle = parser.close()
    except etree.XMLSyntaxError as error:
        open_tags = target.stack[1:]
        if open_tags:
            raise Rejected(
                "truncated",
                "the log ends inside " + " > ".join(f"<{tag}>" for tag in open_tags),
            ) from None
        raise Rejected("malformed_xml", _describe(error)) from None

    if not target.battle_seen:
        raise Rejected("no_battle", "the log has no <BATTLE> element")
    if target.log_battle_id is None:
        raise Rejected("missing_battle_id", "no unit in the log carries a battleid")
    if expected_id is not None and target.log_battle_id != expected_id:
        raise Rejected(
            "battle_id_mismatch",
            f"the file name says battle {expected_id}, the log says {target.log_battle_id}",
        )
    battle.battle_id = target.log_battle_id
    battle.copies = copies
    _finish(battle)
    return battle


def _describe(error: etree.XMLSyntaxError) -> str:
    # Line 1 is the synthetic wrapper's line, so line numbers match the file.
    message = str(error.msg or error).strip()
    return message[:300]


def _finish(battle: Battle) -> None:
    flags = battle.flags
    if battle.copies > 1:
        flags.add("duplicated_log")
    if battle.turns is not None and battle.turns != battle.turns_seen:
        flags.add("turns_mismatch")
    if battle.started_at is None:
        flags.add("missing_start")
    if battle.ended_at is None:
        flags.add("missing_end")
    if battle.unknown:
        flags.add("unknown_markup")
    if battle.bad_values:
        flags.add("bad_values")

    if battle.map_rows:
        digest = hashlib.blake2s("\n".join(battle.map_rows).encode(), digest_size=8)
        battle.map_hash = digest.hexdigest()

    objects = battle.map_objects
    for row in battle.loot:
        item = objects.get(row[1])
        if item is not None:
            row[2] = item.template
            if row[3] is None:
                row[3] = item.name
        if objects:
            row[6] = item is not None
            if item is None:
                flags.add("unmatched_pickups")
