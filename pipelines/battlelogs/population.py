"""Recurring players for the synthetic corpus: a population and its schedule.

A :class:`Population` is a fixed set of members, human players and bots,
drawn from a seed. A member keeps its login, clan, profession (``pro``) and
``man`` for the whole corpus, and its level, rank points and PvE points never
decrease. Clans keep their members, and each clan has one or more rival clans
that it fights in PvP and mixed battles ("clan wars").

A :class:`Schedule` decides when battles start and who plays them:

- a human plays sessions of 2-9 battles with idles of 30 s to 15 min from one
  battle's end to the next one's start, takes breaks of 1-6 hours between
  sessions, and sleeps 6-9 hours a day;
- a bot plays solo PvE in stints of 14-22 hours separated by breaks of
  40-150 minutes, and starts each battle 3-8 s after its previous one ended;
- a battle takes only members whose previous battle ended before its start.

This module does not depend on the log format. corpus.py asks the schedule for
the next battle (:meth:`Schedule.next_cast`), seats the players of the
battle it plans (:meth:`Cast.seat`, :meth:`Cast.joiner`) and reports the
battle's end (:meth:`Schedule.finish`). Times are Unix seconds.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random


HOUR = 3600
DAY = 86_400

DEFAULT_INTERVAL = 60.0
CLANLESS_SHARE = 0.25
MIN_LEVEL, MAX_LEVEL = 8, 20
# Experience gained per battle, in levels: a level takes 250-1000 battles.
EXPERIENCE_PER_BATTLE = (0.001, 0.004)

# Humans. A human who is not seated within HUMAN_MAX_IDLE seconds of the
# last battle's end has left, so the session ends and a break begins.
HUMAN_MIN_IDLE = 30
HUMAN_MEDIAN_IDLE = 150
HUMAN_MAX_IDLE = 900
HUMAN_SESSION_BATTLES = (2, 9)
HUMAN_BREAK = (1 * HOUR, 6 * HOUR)
HUMAN_SLEEP = (6 * HOUR, 9 * HOUR)

# Bots. Each bot has its own idle base, and each idle is the base -1, 0 or +1 s.
BOT_IDLE_BASES = (4, 7)
BOT_STINT = (14 * HOUR, 22 * HOUR)
BOT_BREAK = (40 * 60, 150 * 60)

# Share of PvP and mixed battles led by a clan member that are fought
# against a rival clan.
CLAN_WAR_SHARE = 0.5
# Share of the extra players on the lead's side that come from the lead's clan.
CLANMATE_SHARE = 0.7
RIVALS_PER_CLAN = (1, 3)
# A clanmate or a rival clan's member may be seated up to this many seconds
# before the schedule would have made it ready.
CLAN_LOOKAHEAD = 600


# ---------------------------------------------------------------------------
# Names. corpus.py draws the one-off players of a battle with the same
# functions, so both kinds of corpus use the same login and clan styles.

LATIN_SYLLABLES = (
    "ka", "ro", "mi", "tel", "vor", "an", "dre", "sha", "lin", "gor", "ta", "zu", "mar",
    "ex", "ni", "bo", "ra", "den", "vi", "sol", "kor", "ly", "ner", "pi", "tar", "ul",
    "yen", "qua", "fi", "os", "bel", "cro", "dax", "el", "gri", "hu", "jan", "kes",
)
CYRILLIC_SYLLABLES = (
    "ка", "ро", "ми", "тел", "вор", "ан", "дре", "ша", "лин", "гор", "та", "зу", "мар",
    "ни", "бо", "ра", "ден", "ви", "сол", "кор", "лы", "нер", "пе", "тар", "ул", "яр",
)
CLAN_ADJECTIVES = (
    "Iron", "Red", "Night", "Steel", "Dust", "Wild", "Silent", "North", "Black", "Free",
)
CLAN_NOUNS = (
    "Wolves", "Legion", "Hunters", "Guard", "Wind", "Ash", "Order", "Stalkers",
    "Brothers", "Raiders",
)
CYRILLIC_CLAN_ADJECTIVES = (
    "Стальные", "Ночные", "Дикие", "Северные", "Чёрные", "Вольные",
)
CYRILLIC_CLAN_NOUNS = ("Волки", "Стражи", "Рейдеры", "Братья", "Охотники", "Сталкеры")


def _word(rng: random.Random, syllables: tuple[str, ...], low: int, high: int) -> str:
    count = rng.randint(low, high)
    return "".join(rng.choice(syllables) for _ in range(count)).capitalize()


def draw_login(rng: random.Random, used: set[str]) -> str:
    """Draw a player login that is not in ``used``, and add it there.

    About 15% are Cyrillic, and about 3% contain ``&``, ``"``, ``<``, ``>`` or
    ``'``, which the log must escape.
    """
    while True:
        syllables = CYRILLIC_SYLLABLES if rng.random() < 0.15 else LATIN_SYLLABLES
        first, second = _word(rng, syllables, 2, 3), _word(rng, syllables, 1, 3)
        roll = rng.random()
        if roll < 0.03:
            login = rng.choice((
                f"{first} & {second}", f'{first}"{second}"', f"<{first}>",
                f"{first}'s {second}", f"O'{first}",
            ))
        elif roll < 0.35:
            login = f"{first} {second}"
        elif roll < 0.55:
            login = f"{first}{rng.randint(1, 9999)}"
        elif roll < 0.65:
            login = f"{first}_{second.lower()}"
        elif roll < 0.72:
            login = f"{first}-{second}"
        else:
            login = first
        if login not in used:
            used.add(login)
            return login


def draw_clan(rng: random.Random) -> str | None:
    """Draw a clan name, or None (no clan) for a CLANLESS_SHARE of players."""
    roll = rng.random()
    if roll < CLANLESS_SHARE:
        return None
    return _clan_name(rng, roll)


def _clan_name(rng: random.Random, roll: float) -> str:
    # ``roll`` is uniform in [CLANLESS_SHARE, 1): about 16% of the names are
    # Cyrillic and 7% contain characters that the log must escape.
    if roll < 0.37:
        adjective = rng.choice(CYRILLIC_CLAN_ADJECTIVES)
        return f"{adjective} {rng.choice(CYRILLIC_CLAN_NOUNS)}"
    adjective, noun = rng.choice(CLAN_ADJECTIVES), rng.choice(CLAN_NOUNS)
    if roll < 0.42:
        return rng.choice((
            f"{adjective} & {noun}", f'"{noun}"', f"<{noun}>",
            f"{adjective}'s {noun}",
        ))
    return f"{adjective} {noun}"


# ---------------------------------------------------------------------------
# Members and the population.


class Member:
    """A recurring player: a fixed identity, its progress, and its schedule state."""

    __slots__ = (
        # Identity, fixed for the corpus.
        "login", "bot", "clan", "profession", "man",
        # Progress, which never decreases.
        "level", "experience", "rank_points", "rank_decimals", "pve_points", "battles",
        # Habits: a human's daily sleep, a bot's idle base.
        "sleep_start", "sleep_length", "idle_base",
        # Schedule state, maintained by Schedule.
        "ready", "deadline", "session_left", "stint_end", "last_end", "version",
    )

    def __init__(self, login: str, bot: bool):
        self.login = login
        self.bot = bot
        self.clan: str | None = None
        self.profession = 0
        self.man = 1

        self.level = MIN_LEVEL
        self.experience = 0.0
        self.rank_points = 0.0
        self.rank_decimals = 1
        self.pve_points = 0
        self.battles = 0

        self.sleep_start = 0
        self.sleep_length = 0
        self.idle_base = 0

        self.ready = 0
        self.deadline = 0
        self.session_left = 0
        self.stint_end = 0
        self.last_end = 0
        self.version = 0

    def __repr__(self) -> str:
        kind = "bot" if self.bot else "player"
        return f"<Member {kind} {self.login!r} clan={self.clan!r}>"

    def rank_points_text(self) -> str:
        """Return the rank points as the log writes them, with the member's decimals."""
        return f"{self.rank_points:.{self.rank_decimals}f}"

    def awake_from(self, moment: int) -> int:
        """Return ``moment``, or the end of the sleep that contains it."""
        into_sleep = (moment % DAY - self.sleep_start) % DAY
        if into_sleep < self.sleep_length:
            return moment + self.sleep_length - into_sleep
        return moment

    def to_json(self) -> dict:
        return {
            "login": self.login,
            "bot": self.bot,
            "clan": self.clan,
            "profession": self.profession,
            "man": self.man,
        }


def default_clans(players: int) -> int:
    """Return the default number of clans: players / 8, at least 2, at most players."""
    return min(players, max(2, round(players / 8)))


def check_population_options(
    players: int, bots: int, clans: int | None, interval: float | None = None
) -> None:
    """Raise ValueError for counts or an interval that no population can have."""
    if players < 1:
        raise ValueError(f"players must be 1 or more, not {players}")
    if bots < 0:
        raise ValueError(f"bots must be zero or more, not {bots}")
    if clans is not None and not 0 <= clans <= players:
        raise ValueError(
            f"clans must be between 0 and players ({players}), not {clans}, "
            "because every clan starts with one player"
        )
    if interval is not None:
        check_interval(interval)


def check_interval(interval: float) -> None:
    """Raise ValueError unless ``interval`` is a positive, finite number of seconds."""
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(
            f"interval must be a positive number of seconds, not {interval}"
        )


class Population:
    """Human players, bots and clans, drawn from ``seed``.

    ``clans`` defaults to :func:`default_clans`. The first ``clans`` players
    found one clan each, and every other member joins a clan (larger clans
    more often) or, with a CLANLESS_SHARE chance, none. Raises ValueError for
    invalid counts.
    """

    def __init__(
        self, seed: int, players: int, bots: int = 0, clans: int | None = None
    ):
        check_population_options(players, bots, clans)
        if clans is None:
            clans = default_clans(players)
        rng = random.Random(f"tzb-population:{seed}")
        self.seed = seed
        self.clans = self._draw_clan_names(rng, clans)
        self.rivals = self._draw_rivals(rng, self.clans)

        # Pareto weights make a few large clans and many small ones. They are
        # cumulative, so that each draw is a binary search.
        weights = (rng.paretovariate(1.5) for _ in self.clans)
        clan_weights = list(itertools.accumulate(weights))
        logins: set[str] = set()
        self.members: list[Member] = []
        for index in range(players + bots):
            member = Member(draw_login(rng, logins), bot=index >= players)
            if index < clans:
                member.clan = self.clans[index]
            elif self.clans and rng.random() >= CLANLESS_SHARE:
                member.clan = rng.choices(self.clans, cum_weights=clan_weights)[0]
            member.profession = rng.randint(0, 17)
            member.man = rng.choice((0, 1, 1))
            member.level = rng.randint(MIN_LEVEL, 16 if member.bot else 18)
            member.rank_points = rng.uniform(0, 1_500)
            member.rank_decimals = rng.choice((0, 1, 1, 2))
            member.pve_points = rng.randint(0, 900_000)
            if member.bot:
                member.idle_base = rng.randint(*BOT_IDLE_BASES)
            else:
                # Sleep starts around 22:00 UTC (01:00 in Moscow), give or take
                # a few hours.
                sleep_hour = (20 + rng.gauss(2, 2.5)) % 24
                member.sleep_start = int(sleep_hour * HOUR)
                member.sleep_length = rng.randint(*HUMAN_SLEEP)
            self.members.append(member)

    @property
    def humans(self) -> list[Member]:
        return [member for member in self.members if not member.bot]

    @property
    def bots(self) -> list[Member]:
        return [member for member in self.members if member.bot]

    @staticmethod
    def _draw_clan_names(rng: random.Random, count: int) -> list[str]:
        names: list[str] = []
        taken: set[str] = set()
        for _ in range(count):
            name = base = _clan_name(rng, rng.uniform(CLANLESS_SHARE, 1.0))
            number = 2
            while name in taken:
                name = f"{base} {number}"
                number += 1
            taken.add(name)
            names.append(name)
        return names

    @staticmethod
    def _draw_rivals(
        rng: random.Random, clans: list[str]
    ) -> dict[str, tuple[str, ...]]:
        # Rivalry is mutual. Sets are only tested and sorted, never iterated
        # unsorted, because their order changes with PYTHONHASHSEED.
        rivals: dict[str, set[str]] = {clan: set() for clan in clans}
        if len(clans) >= 2:
            for clan in clans:
                target_count = min(rng.randint(*RIVALS_PER_CLAN), len(clans) - 1)
                while len(rivals[clan]) < target_count:
                    other = rng.choice(clans)
                    if other != clan:
                        rivals[clan].add(other)
                        rivals[other].add(clan)
        return {clan: tuple(sorted(others)) for clan, others in rivals.items()}

    def to_json(self) -> dict:
        """Return the clans with their rivals and the members, for population.json."""
        humans = sum(not member.bot for member in self.members)
        return {
            "seed": self.seed,
            "players": humans,
            "bots": len(self.members) - humans,
            "clans": [
                {"name": clan, "rivals": list(self.rivals[clan])} for clan in self.clans
            ],
            "members": [member.to_json() for member in self.members],
        }


# ---------------------------------------------------------------------------
# The schedule.


class Cast:
    """The members of one battle: the lead, the players seated with it, and joiners."""

    def __init__(self, schedule: Schedule, start: int, lead: Member):
        self.schedule = schedule
        self.start = start
        self.lead = lead
        self.seats: list[tuple[Member, int]] = [(lead, 1)]
        self.joiners: list[Member] = []

    @property
    def members(self) -> list[Member]:
        return [member for member, _ in self.seats] + self.joiners

    def seat(self, kind: str, sides: list[int]) -> list[int]:
        """Seat ready members on the planned player ``sides``, the lead on the first.

        Returns the sides that got a member, in the order of :attr:`seats`,
        which is shorter than ``sides`` when too few members are ready. A bot
        always plays alone. A call replaces the seats of an earlier call and
        returns those members to the queue.
        """
        schedule = self.schedule
        for member, _ in self.seats[1:]:
            schedule.requeue(member)
        lead_side = sides[0]
        self.seats = [(self.lead, lead_side)]
        if self.lead.bot:
            return [lead_side]

        rival = None
        if kind != "pve":
            rival = schedule.rival_clan(self.lead.clan, self.start)
        opposing = next((side for side in sides if side != lead_side), None)
        # The opposing side is seated first, so that in a clan war no third
        # side takes the rival clan's ready members.
        others = sorted(sides[1:], key=lambda side: side != opposing)
        for side in others:
            if side == lead_side:
                member = schedule.take_ally(
                    self.lead.clan, self.start, only_clan=rival is not None
                )
            elif rival is not None and side == opposing:
                member = schedule.take_from_clan(rival, self.start)
            else:
                member = schedule.take(self.start)
            if member is not None:
                self.seats.append((member, side))
        return [side for _, side in self.seats]

    def joiner(self) -> Member | None:
        """Take a ready member who joins the battle late, or None if none is ready."""
        if self.lead.bot:
            return None
        member = self.schedule.take(self.start)
        if member is not None:
            self.joiners.append(member)
        return member


class Schedule:
    """Battle starts and players for a population, in start order.

    Human battles start on a clock whose gaps are exponential with mean
    ``interval`` seconds. When no human is ready at a tick, the battle waits
    for the first one who is, so a population too small for the interval
    spreads the battles thinner. Each bot adds its own battles between the
    ticks. Call :meth:`finish` for each cast before the next
    :meth:`next_cast`, because a member in a battle is in no queue.
    """

    def __init__(self, population: Population, seed: int, interval: float, start: int):
        check_interval(interval)
        self.population = population
        self.rng = random.Random(f"tzb-schedule:{seed}")
        self.interval = interval
        self.tick = start
        self._order = itertools.count()
        self._open: Cast | None = None
        # Heaps of (ready time, order, member, version). An entry is void
        # once its member's version has changed. It is dropped when it
        # reaches the top, because removing it from the middle costs O(n).
        self._ready: list = []
        self._clan_ready: dict[str, list] = {clan: [] for clan in population.clans}
        # Heap of (start, order, bot) with one entry per bot not in a battle.
        self._bots: list = []

        rng = self.rng
        for member in population.members:
            if member.bot:
                first = start + rng.randint(0, HOUR)
                member.stint_end = first + rng.randint(*BOT_STINT)
                heapq.heappush(self._bots, (first, next(self._order), member))
            else:
                self._start_session(member, start + rng.randint(0, 8 * HOUR))

    # Queues ------------------------------------------------------------------

    def _push(self, member: Member) -> None:
        member.version += 1
        entry = (member.ready, next(self._order), member, member.version)
        heapq.heappush(self._ready, entry)
        if member.clan is not None:
            heapq.heappush(self._clan_ready[member.clan], entry)

    def requeue(self, member: Member) -> None:
        """Return a member taken for a battle that it does not play."""
        self._push(member)

    def _start_session(self, member: Member, earliest: int) -> None:
        ready = member.awake_from(earliest)
        if ready != earliest:
            # Awake, but not at the keyboard at once.
            ready += self.rng.randint(0, 2 * HOUR)
        member.ready = ready
        member.deadline = ready + HUMAN_MAX_IDLE
        member.session_left = self.rng.randint(*HUMAN_SESSION_BATTLES)
        self._push(member)

    def _human_break(self) -> int:
        low, high = HUMAN_BREAK
        return round(math.exp(self.rng.uniform(math.log(low), math.log(high))))

    def _human_idle(self) -> int:
        # The cap leaves the schedule a minute to seat the human before the
        # deadline ends the session.
        idle = self.rng.lognormvariate(math.log(HUMAN_MEDIAN_IDLE), 1.1)
        return round(min(HUMAN_MAX_IDLE - 60, max(HUMAN_MIN_IDLE, idle)))

    def _top(self, heap: list, moment: int) -> tuple | None:
        # Returns the valid top entry, after dropping void entries and
        # sending members who waited past their deadline on a break.
        while heap:
            entry = heap[0]
            ready, _, member, version = entry
            if version != member.version:
                heapq.heappop(heap)
                continue
            if ready <= moment and moment > member.deadline:
                heapq.heappop(heap)
                self._start_session(member, member.deadline + self._human_break())
                continue
            return entry
        return None

    def _top_at(self, heap: list, moment: int, lookahead: int) -> tuple | None:
        # Returns the valid top entry if its member can play at ``moment``:
        # ready by then, or within ``lookahead`` seconds and awake, with at
        # least HUMAN_MIN_IDLE since its last battle.
        entry = self._top(heap, moment)
        if entry is None or entry[0] > moment + lookahead:
            return None
        member = entry[2]
        if entry[0] > moment:
            rested = member.last_end + HUMAN_MIN_IDLE <= moment
            if not rested or member.awake_from(moment) != moment:
                return None
        return entry

    def _take_from(self, heap: list, moment: int, lookahead: int = 0) -> Member | None:
        entry = self._top_at(heap, moment, lookahead)
        if entry is None:
            return None
        heapq.heappop(heap)
        member = entry[2]
        member.version += 1  # voids its entry in the other heap
        return member

    def take(self, moment: int) -> Member | None:
        """Take the human who has been ready the longest at ``moment``, or None."""
        return self._take_from(self._ready, moment)

    def take_from_clan(self, clan: str, moment: int) -> Member | None:
        """Take the human of ``clan`` who has waited longest, or None.

        The member may come up to CLAN_LOOKAHEAD seconds before it is ready.
        """
        return self._take_from(self._clan_ready[clan], moment, CLAN_LOOKAHEAD)

    def take_ally(
        self, clan: str | None, moment: int, only_clan: bool
    ) -> Member | None:
        """Take a human for the lead's side, often from the lead's ``clan``, or None.

        With ``only_clan`` only a clanmate qualifies.
        """
        if clan is not None and (only_clan or self.rng.random() < CLANMATE_SHARE):
            member = self.take_from_clan(clan, moment)
            if member is not None or only_clan:
                return member
        return self.take(moment)

    def rival_clan(self, clan: str | None, moment: int) -> str | None:
        """Draw whether a PvP battle is a clan war, and return the rival clan if so.

        Only a rival clan with a member who can play at ``moment`` qualifies.
        """
        if clan is None or self.rng.random() >= CLAN_WAR_SHARE:
            return None
        rivals = list(self.population.rivals[clan])
        self.rng.shuffle(rivals)
        for rival in rivals:
            entry = self._top_at(self._clan_ready[rival], moment, CLAN_LOOKAHEAD)
            if entry is not None:
                return rival
        return None

    # Battles -----------------------------------------------------------------

    def next_cast(self) -> Cast:
        """Return the next battle's start and lead member. Starts never decrease."""
        if self._open is not None:
            raise RuntimeError("call finish() for the previous cast first")
        entry = self._top(self._ready, self.tick)
        human_start = max(self.tick, entry[0]) if entry is not None else math.inf
        if self._bots and self._bots[0][0] <= human_start:
            start, _, bot = heapq.heappop(self._bots)
            cast = Cast(self, start, bot)
        else:
            # Every human not in a battle has a queue entry, and there is at
            # least one human, so the queue is never empty here.
            lead = self.take(human_start)
            cast = Cast(self, human_start, lead)
            self.tick = human_start + round(self.rng.expovariate(1 / self.interval))
        self._open = cast
        return cast

    def finish(self, cast: Cast, kind: str, end: int, survivors: list[Member]) -> None:
        """Record the end of ``cast``'s battle of ``kind``, and queue its members again.

        ``survivors`` are the members who did not die. Their progress grows:
        level with every battle, PvE points for surviving a PvE or mixed
        battle, rank points in PvP and mixed battles (more for survivors).
        """
        if cast is not self._open:
            raise RuntimeError(
                "finish() expects the cast that next_cast() returned last"
            )
        self._open = None
        rng = self.rng
        alive = {id(member) for member in survivors}
        for member in cast.members:
            survived = id(member) in alive
            member.battles += 1
            member.experience += rng.uniform(*EXPERIENCE_PER_BATTLE)
            if member.experience >= 1 and member.level < MAX_LEVEL:
                member.level += 1
                member.experience -= 1
            if kind != "pvp" and survived:
                member.pve_points += rng.randint(5, 40) * member.level
            if kind != "pve":
                gain = rng.uniform(2, 15) if survived else rng.uniform(0, 1)
                member.rank_points += gain

            if member.bot:
                self._queue_bot(member, end)
            else:
                self._queue_human(member, end)

    def _queue_bot(self, bot: Member, end: int) -> None:
        start = end + bot.idle_base + self.rng.choice((-1, 0, 0, 1))
        if start >= bot.stint_end:
            start = end + self.rng.randint(*BOT_BREAK)
            bot.stint_end = start + self.rng.randint(*BOT_STINT)
        heapq.heappush(self._bots, (start, next(self._order), bot))

    def _queue_human(self, member: Member, end: int) -> None:
        member.last_end = end
        member.session_left -= 1
        if member.session_left <= 0:
            self._start_session(member, end + self._human_break())
            return
        ready = end + self._human_idle()
        if member.awake_from(ready) != ready:
            self._start_session(member, ready)
            return
        member.ready = ready
        member.deadline = end + HUMAN_MAX_IDLE
        self._push(member)
