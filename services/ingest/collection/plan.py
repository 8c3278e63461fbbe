"""The order in which a job requests battle ids, and how far it has got.

A plan is driven by one job thread: it asks :meth:`IdPlan.next_action`
what to do, hands ids to fetchers, and reports each id's status with
:meth:`IdPlan.done` (or returns an unprocessed id with
:meth:`IdPlan.give_back`). Ids finish out of order when several bots work
at once, so the plan keeps ``cursor``: every id before it, in the job's
direction, has a status.
"""

from dataclasses import dataclass


FETCH = "fetch"
#: Wait for an id in flight to finish before deciding what comes next.
WAIT = "wait"
#: A forward job reached the newest battle: wait the poll interval, then call reprobe().
HEAD = "head"
DONE = "done"


@dataclass(frozen=True)
class Action:
    kind: str
    battle_id: int | None = None
    #: Request the id even when it is stored as not found (a forward job at the newest battles).
    force: bool = False


class IdPlan:
    """Ids from ``start`` to ``last`` inclusive, ascending (``step`` 1) or descending (``step`` -1)."""

    def __init__(self, start: int, last: int, step: int):
        if step not in (1, -1):
            raise ValueError(f"step must be 1 or -1, got {step}")
        self.step = step
        self.last = last
        self.cursor = start
        self._next = start
        self._in_flight: set[int] = set()
        self._results: dict[int, str] = {}
        self._given_back: list[int] = []

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def resume_id(self) -> int:
        """The id from which the job would start again after a restart."""
        return self.cursor

    def _within(self, battle_id: int) -> bool:
        return battle_id <= self.last if self.step == 1 else battle_id >= self.last

    def _dispatch(self, battle_id: int, force: bool = False) -> Action:
        self._in_flight.add(battle_id)
        return Action(FETCH, battle_id, force)

    def next_action(self) -> Action:
        if self._given_back:
            # The earliest id first, so the cursor can move on soonest.
            self._given_back.sort(reverse=self.step == 1)
            return self._dispatch(self._given_back.pop())
        if self._within(self._next):
            battle_id = self._next
            self._next += self.step
            return self._dispatch(battle_id)
        return Action(WAIT) if self._in_flight else Action(DONE)

    def done(self, battle_id: int, status: str) -> None:
        """Take the status of a dispatched id: fetched, not_found, failed or mismatch."""
        self._in_flight.discard(battle_id)
        self._results[battle_id] = status
        while self.cursor in self._results:
            self._consume(self.cursor, self._results.pop(self.cursor))
            self.cursor += self.step

    def give_back(self, battle_id: int) -> None:
        """Return a dispatched id that was not processed; it is handed out again."""
        self._in_flight.discard(battle_id)
        self._given_back.append(battle_id)

    def _consume(self, battle_id: int, status: str) -> None:
        """Handle the statuses in id order; the forward plan tracks missing ids here."""


class ForwardPlan(IdPlan):
    """Ascending ids that follow the newest battles.

    ``newest`` is the highest id known to exist (fetched, or loaded from
    files). A not_found id above it is at the head: the battle may not have
    ended yet, so it is requested again later. When ``head_misses`` ids in a
    row past the newest are not found and no later id exists, the plan
    returns HEAD; after the wait, :meth:`reprobe` starts again from the
    first missing id. Missing ids that a later fetched id leaves behind stay
    not_found. With ``last`` the job ends once every id up to it is fetched
    or left behind; without it (None) the job follows until aborted.
    """

    def __init__(self, start: int, last: int | None, head_misses: int, newest: int | None):
        super().__init__(start, last if last is not None else 0, 1)
        self.bounded = last is not None
        self.head_misses = head_misses
        self.newest = newest if newest is not None else 0
        #: First id of the current run of missing ids, in id order.
        self.missing_from: int | None = None
        self.missing_count = 0

    @property
    def resume_id(self) -> int:
        return self.missing_from if self.missing_from is not None else self.cursor

    def _within(self, battle_id: int) -> bool:
        return not self.bounded or battle_id <= self.last

    def _at_head(self) -> bool:
        if self.missing_from is None:
            return False
        return self.missing_count >= self.head_misses or not self._within(self._next)

    def next_action(self) -> Action:
        if self._given_back:
            self._given_back.sort(reverse=True)
            battle_id = self._given_back.pop()
            return self._dispatch(battle_id, battle_id > self.newest)
        if self._at_head():
            # Ids in flight past the run of missing ids may still exist and
            # leave the run behind, so wait for them before deciding.
            return Action(WAIT) if self._in_flight else Action(HEAD)
        if self._within(self._next):
            battle_id = self._next
            self._next += 1
            return self._dispatch(battle_id, battle_id > self.newest)
        return Action(WAIT) if self._in_flight else Action(DONE)

    def _consume(self, battle_id: int, status: str) -> None:
        if status == "not_found" and battle_id > self.newest:
            if self.missing_from is None:
                self.missing_from = battle_id
            self.missing_count += 1
            return
        if status == "fetched":
            self.newest = max(self.newest, battle_id)
        # Any other answer means the server has got past this id.
        self.missing_from = None
        self.missing_count = 0

    def reprobe(self) -> None:
        """Start again from the first missing id, after the wait at the head."""
        if self._in_flight:
            raise RuntimeError("reprobe() while ids are in flight")
        if self.missing_from is None:
            return
        self.cursor = self._next = self.missing_from
        self._results.clear()
        self.missing_from = None
        self.missing_count = 0
