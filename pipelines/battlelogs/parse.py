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
* a number that does not parse, or does not fit its column, is stored as
  NULL and flagged ``bad_values``.
"""

import hashlib
import re
from logging import getLogger

from lxml import etree

from pipelines.battlelogs.model import SELF_ATTACK_TYPES, Battle, MapObject, Participant
from pipelines.battlelogs.read import RawLog, Rejected, SourceFile, read_log


_log = getLogger(__name__)

#: Deepest element nesting accepted, counting the synthetic wrapper element.
#: Real logs nest at most six levels (wrapper, BLOOK, BATTLE, TURN, USER, a).
MAX_DEPTH = 32

_WRAPPER = "TZRLOG"
_WRAPPER_OPEN = b"<TZRLOG>"
_WRAPPER_CLOSE = b"</TZRLOG>"
_XML_DECLARATION_RE = re.compile(rb"^\s*<\?xml[^>]*\?>")
_TRAILER_RE = re.compile(rb"\s*(</BLOOK\s*>\s*)?")
# A wrapper closed and opened again between two copies of the battle.
_REWRAP_RE = re.compile(rb"\s*</BLOOK\s*>\s*<BLOOK(\s[^>]*)?>\s*$")

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

_KNOWN_ACTION_ATTRIBUTES = KNOWN_ATTRIBUTES["a"]

# The attribute that carries an action's one numeric detail, by action code:
# facing for a turn, the weapon for taking one in hand, the stance for t=6.
_VALUE_ATTRIBUTE = {"1": "direct", "3": "weapon", "6": "run"}

SMALLINT_MAX = 2**15 - 1
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
#: Unix times accepted for battle start and end: 1970 to 2106.
TIME_MAX = 2**32


def _decoded(value):
    # With entity resolution off, libxml2 hands every literal "&" in an
    # attribute value to SAX targets as "&#38;" (lxml 6.1, libxml2 2.14), while
    # "&lt;", "&quot;" and character references arrive decoded. No other
    # sequence can produce "&#38;", so replacing it back is exact.
    if value is None or "&" not in value:
        return value
    return value.replace("&#38;", "&")


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

    return hit_kind, amount, effect_code, effect_amount, heal


class _LogTarget:
    """lxml parser target that turns start tags into a :class:`Battle`.

    Only start tags carry data: the context an element needs (the current
    TURN and acting USER) is known from the start tags before it, because
    actions always sit in a TURN's USER block and roster USERs come before
    the first TURN. End tags only count towards the nesting depth.
    """

    def __init__(self):
        self.battle = Battle(battle_id=0)
        self.log_battle_id: int | None = None
        self.by_login: dict[str, Participant] = {}
        self.battle_seen = False
        self.turn: int | None = None
        self.actor: Participant | None = None
        self.start, self.end = self._make_callbacks()

    def _make_callbacks(self):
        # lxml looks up target.start once, so a closure over local names
        # saves attribute lookups on the hot path: <a> is about nine elements
        # in ten. Action columns stay raw strings and are converted for the
        # whole batch at once.
        codes = self.battle.action_codes
        codes_append = codes.append
        frames_append = self.battle.action_frames.append
        known_action = _KNOWN_ACTION_ATTRIBUTES
        action_detail = self._action_detail
        start_other = self._start_other
        count_unknown = self._count_unknown
        by_login = self.by_login
        segments_append = self.battle.segments.append
        attacks_append = self.battle.attacks.append
        new_target = self._target
        self_attack_types = SELF_ATTACK_TYPES
        max_depth = MAX_DEPTH
        # Depth is the number of start tags minus the number of end tags. lxml
        # calls end(tag) for every element, and a C-level list.append costs
        # far less there than a Python function would. Stored actions are
        # counted by their list, so the hot path needs no counter of its own.
        # Only elements other than <a> are checked: a run of nested <a> is
        # still bounded by the file size limit, and no state grows with it.
        closed = []
        other_starts = 0
        skipped_actions = 0

        def start(tag, attrib):
            nonlocal other_starts, skipped_actions
            if tag == "a" and self.actor is not None:
                try:
                    code = attrib["t"]
                    frame = attrib["sf"]
                except KeyError:
                    code = attrib.get("t")
                    frame = attrib.get("sf")
                codes_append(code)
                frames_append(frame)
                if code == "5":
                    # Attacks, about one action in six, are handled here
                    # rather than in _action_detail to save a call.
                    get = attrib.get
                    login = get("login")
                    attack_type = get("type")
                    if login is not None:
                        unit = by_login.get(login)
                        target = unit.pid if unit is not None else new_target(login)
                    elif attack_type in self_attack_types:
                        target = self.actor.pid
                    else:
                        target = None
                    attacks_append((len(codes) - 1, attack_type, target, get("xy"), get("HP")))
                elif code != "2":
                    action_detail(code, attrib.get)
                # A move with exactly t and sf needs no check for unknown names.
                if len(attrib) != 2 and not known_action.issuperset(attrib):
                    count_unknown(tag, attrib, known_action)
                return

            if tag == "a":
                skipped_actions += 1
                self.battle.unknown["<a> outside a TURN's USER"] += 1
                return
            other_starts += 1
            if other_starts + skipped_actions + len(codes) - len(closed) > max_depth:
                raise Rejected("too_deep", f"elements nest deeper than {max_depth} levels")
            # Fast path for a known unit's block in a TURN, the second most
            # common element: no join, no death, no battle id.
            if tag == "USER" and self.turn is not None and len(attrib) == 1:
                participant = by_login.get(attrib.get("login"))
                if participant is not None:
                    self.actor = participant
                    segments_append((len(codes), self.turn, participant.pid))
                    return
            start_other(tag, attrib)

        return start, closed.append

    def _start_other(self, tag, attrib):
        known = KNOWN_ATTRIBUTES.get(tag)
        if known is None:
            self.battle.unknown[f"<{tag}>"] += 1
            return
        if not known.issuperset(attrib):
            self._count_unknown(tag, attrib, known)
        if tag == "USER":
            self._user(attrib)
        elif tag == "O":
            self._object(attrib)
        elif tag == "TURN":
            self._turn(attrib)
        elif tag == "MAP":
            if self.turn is None and self.battle_seen:
                self.battle.map_rows.append(attrib.get("v", ""))
        elif tag == "BATTLE":
            self._battle(attrib)

    def close(self):
        return self.battle

    def _count_unknown(self, tag, attrib, known):
        for name in attrib:
            if name not in known:
                self.battle.unknown[f"{tag}@{name}"] += 1

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
        self.actor = None
        battle = self.battle
        battle.ended_at = self._int(attrib.get("t2"), TIME_MAX, low=0)
        battle.turns = self._int(attrib.get("turn"))
        battle.turn_seconds = self._int(attrib.get("t"))
        battle.type = _decoded(attrib.get("f")) or None
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
        self.actor = None
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
        if not login:
            self.battle.unknown["USER without login"] += 1
            self.actor = None
            return
        turn = self.turn

        battle_id = attrib.get("battleid")
        if battle_id is not None:
            self._check_battle_id(battle_id)

        if turn is None:
            participant = self.by_login.get(login)
            if participant is not None and participant.in_roster:
                # Two roster entries for one login become one unit; the
                # later entry's attributes win.
                self.battle.flags.add("duplicate_roster_login")
            participant = self._participant(login, in_roster=True)
            participant.in_roster = True
            self._roster_attributes(participant, attrib)
            if attrib.get("HP") == "0":
                participant.hp_zero_turn = 0
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
        if attrib.get("HP") == "0" and participant.hp_zero_turn is None:
            participant.hp_zero_turn = turn
        self.actor = participant
        self.battle.segments.append((len(self.battle.action_codes), turn, participant.pid))

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
        participant.image = _decoded(get("img")) or None
        rank_points = get("rank_points")
        if rank_points is not None:
            try:
                value = float(rank_points)
            except ValueError:
                value = None
            if value is None or not abs(value) < 1e10:
                self.battle.bad_values += 1
            else:
                participant.rank_points = value
        if participant.is_monster:
            spec = _decoded(get("def") or get("color"))
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
        if "bx" not in attrib:
            return  # equipment or inventory, not an object on the map
        item_id = self._int(attrib.get("id"), BIGINT_MAX)
        if item_id is None:
            return
        self.battle.map_objects.setdefault(item_id, MapObject(
            item_id=item_id,
            template=_decoded(attrib.get("name")) or None,
            name=_decoded(attrib.get("txt")) or None,
            count=self._int(attrib.get("count"), INT_MAX),
        ))

    def _target(self, login):
        """Return the pid of a target, adding the unit when it was never listed."""
        target = self.by_login.get(login)
        if target is None:
            target = self._participant(login, in_roster=False)
            target.joined_turn = self.turn
            self.battle.flags.add("unlisted_target")
        return target.pid

    def _action_detail(self, code, get):
        battle = self.battle
        index = len(battle.action_codes) - 1
        if code == "20":
            login = get("login")
            battle.specials.append((index, get("code"), None if login is None else self._target(login)))
        elif code == "8":
            item_id = self._int(get("id"), BIGINT_MAX)
            if item_id is not None:
                count = self._int(get("count"), INT_MAX)
                battle.pickups.append((
                    index, self.actor.pid, item_id, _decoded(get("txt")) or None,
                    count if count and count > 0 else 1,
                ))
        else:
            value_attribute = _VALUE_ATTRIBUTE.get(code)
            if value_attribute is not None:
                battle.values.append((index, get(value_attribute)))


def strip_copies(data: bytes) -> tuple[bytes, int]:
    """Cut a log that repeats its battle down to the first copy.

    Returns the data to parse and the number of copies found. A copy is the
    BATTLE block with the TURNs after it, and a ``</BLOOK><BLOOK>`` pair
    between copies is ignored, so a whole log written twice counts as two
    copies. Copies must be byte-identical (surrounding white space aside);
    otherwise the log is rejected, because there is no safe way to choose
    between them.
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

    def copy_between(begin, end):
        copy = data[begin:end]
        rewrap = _REWRAP_RE.search(copy)
        if rewrap is not None:
            copy = copy[:rewrap.start()]
        return copy.strip()

    first = copy_between(positions[0], positions[1])
    for begin, end in zip(positions[1:-1], positions[2:]):
        if copy_between(begin, end) != first:
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
        raise _syntax_rejection(error) from None
    try:
        parser.feed(_WRAPPER_CLOSE)
        battle = parser.close()
    except etree.XMLSyntaxError as error:
        # The data itself went through; what fails is closing the wrapper,
        # so elements were still open when the data ended.
        rejection = _syntax_rejection(error)
        if rejection.reason == "malformed_xml":
            rejection = Rejected("truncated", f"the log ends inside an open element ({rejection.detail})")
        raise rejection from None

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


def _syntax_rejection(error: etree.XMLSyntaxError) -> Rejected:
    return Rejected("malformed_xml", _describe(error))


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
    if battle.map_rows:
        digest = hashlib.blake2s("\n".join(battle.map_rows).encode(), digest_size=8)
        battle.map_hash = digest.hexdigest()
    if battle.map_objects and any(row[2] not in battle.map_objects for row in battle.pickups):
        flags.add("unmatched_pickups")


def load_log(source: SourceFile, max_bytes: int) -> tuple[RawLog, Battle]:
    """Read and parse one input file with every check that ingestion applies.

    Raises :class:`~pipelines.battlelogs.read.Rejected` for a file that
    ingestion would quarantine, so ``tzr-ingest show`` and a run agree.
    """
    if source.name_battle_id is None:
        raise Rejected(
            "bad_file_name",
            f"expected <battle_id>.tzb or <battle_id>.tzb.gz (at most 12 digits), got {source.path.name!r}",
        )
    raw = read_log(source, max_bytes)
    try:
        battle = parse_log(raw.data, source.name_battle_id)
        if battle.started_at is None and battle.ended_at is None:
            raise Rejected("missing_time", "the header has neither an end time (t2) nor a start time (note)")
    except Rejected as rejection:
        rejection.sha256, rejection.size = raw.sha256, raw.size
        raise
    battle.flags |= raw.flags
    return raw, battle
