"""SQL for collection jobs and per-battle outcomes (tables of migration 0003.collection)."""

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


STATUSES = ("fetched", "not_found", "failed", "mismatch")
JOB_STATUSES = ("running", "finished", "aborted", "failed")
DIRECTIONS = ("forward", "backward", "range")

_JOB_COLUMNS = (
    "id, server, direction, trigger, start_id, end_id, requested_count, cursor_id, status, abort_requested,"
    " fetched, not_found, failed, mismatch, skipped, waiting_until, error, created_at, resumed_at,"
    " updated_at, finished_at"
)


class JobAlreadyRunning(Exception):
    """A job of that direction is already running on that game server."""


@dataclass(frozen=True)
class BattleOutcome:
    """The outcome of one battle id, as stored in ``collect_battles``."""

    status: str
    attempts: int = 0
    reason: str | None = None
    code: str | None = None
    found_id: int | None = None
    size: int | None = None
    sha256: str | None = None
    detail: str | None = None
    bot: str | None = None


@dataclass(frozen=True)
class StoredStatus:
    """The stored status of one battle id and the job that recorded it."""

    status: str
    job_id: int | None


class CollectStore:
    """Reads and writes the collection tables through a psycopg pool.

    Every method borrows a connection for one transaction. psycopg raises
    ``psycopg.Error`` (and the pool ``PoolTimeout``) when the database fails;
    callers decide whether that ends a job or an RPC.
    """

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    # -- jobs

    def create_job(self, server: str, direction: str, trigger: str, start: int, end: int | None,
                   count: int | None) -> dict:
        """Insert a running job; raise JobAlreadyRunning when one of that direction runs."""
        try:
            with self.pool.connection() as connection:
                row = connection.cursor(row_factory=dict_row).execute(
                    "INSERT INTO collect_jobs (server, direction, trigger, start_id, end_id, requested_count,"
                    " cursor_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    f" RETURNING {_JOB_COLUMNS}",
                    (server, direction, trigger, start, end, count, start),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise JobAlreadyRunning(f"a {direction} job is already running on server {server}") from None
        return row

    def job(self, job_id: int) -> dict | None:
        with self.pool.connection() as connection:
            return connection.cursor(row_factory=dict_row).execute(
                f"SELECT {_JOB_COLUMNS} FROM collect_jobs WHERE id = %s", (job_id,)
            ).fetchone()

    def running_job(self, server: str, direction: str) -> dict | None:
        with self.pool.connection() as connection:
            return connection.cursor(row_factory=dict_row).execute(
                f"SELECT {_JOB_COLUMNS} FROM collect_jobs WHERE server = %s AND direction = %s"
                " AND status = 'running'",
                (server, direction),
            ).fetchone()

    def jobs(self, server: str, limit: int, status: str | None = None) -> list[dict]:
        """Return the latest jobs of ``server``, newest first."""
        with self.pool.connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            if status is None:
                cursor.execute(
                    f"SELECT {_JOB_COLUMNS} FROM collect_jobs WHERE server = %s ORDER BY id DESC LIMIT %s",
                    (server, limit),
                )
            else:
                cursor.execute(
                    f"SELECT {_JOB_COLUMNS} FROM collect_jobs WHERE server = %s AND status = %s"
                    " ORDER BY id DESC LIMIT %s",
                    (server, status, limit),
                )
            return cursor.fetchall()

    def running_jobs(self, server: str) -> list[dict]:
        return self.jobs(server, 1000, "running")

    def request_abort(self, job_id: int) -> dict | None:
        """Flag a running job for abort and return the job (unchanged when it is no longer running)."""
        with self.pool.connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            row = cursor.execute(
                "UPDATE collect_jobs SET abort_requested = true, updated_at = now()"
                f" WHERE id = %s AND status = 'running' RETURNING {_JOB_COLUMNS}",
                (job_id,),
            ).fetchone()
            if row is None:
                row = cursor.execute(f"SELECT {_JOB_COLUMNS} FROM collect_jobs WHERE id = %s", (job_id,)).fetchone()
            return row

    def mark_resumed(self, job_id: int) -> None:
        with self.pool.connection() as connection:
            connection.execute(
                "UPDATE collect_jobs SET resumed_at = now(), updated_at = now(), waiting_until = NULL"
                " WHERE id = %s",
                (job_id,),
            )

    def save_cursor(self, job_id: int, cursor: int, waiting_until: datetime | None = None) -> bool:
        """Store the job's cursor and return whether an abort was requested."""
        with self.pool.connection() as connection:
            row = connection.execute(
                "UPDATE collect_jobs SET cursor_id = %s, waiting_until = %s, updated_at = now()"
                " WHERE id = %s RETURNING abort_requested",
                (cursor, waiting_until, job_id),
            ).fetchone()
        return bool(row and row[0])

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        """End a running job as finished, aborted or failed; a job that already ended stays as it is."""
        with self.pool.connection() as connection:
            connection.execute(
                "UPDATE collect_jobs SET status = %s, error = %s, waiting_until = NULL, finished_at = now(),"
                " updated_at = now() WHERE id = %s AND status = 'running'",
                (status, error, job_id),
            )

    # -- battles

    def battle_status(self, server: str, battle_id: int) -> StoredStatus | None:
        with self.pool.connection() as connection:
            row = connection.execute(
                "SELECT status, job_id FROM collect_battles WHERE server = %s AND battle_id = %s",
                (server, battle_id),
            ).fetchone()
        return StoredStatus(row[0], row[1]) if row else None

    def record(self, server: str, battle_id: int, job_id: int, outcome: BattleOutcome,
               previous: StoredStatus | None) -> None:
        """Store a battle's outcome and move the job's count of it, in one transaction.

        ``previous`` is the battle's status before the request. When this job
        had recorded it, its old count goes down, so the job's counts stay
        one per battle id.
        """
        if outcome.status not in STATUSES:
            raise ValueError(f"unknown battle status {outcome.status!r}")
        counts = {name: 0 for name in STATUSES}
        counts[outcome.status] += 1
        if previous is not None and previous.job_id == job_id and previous.status in counts:
            counts[previous.status] -= 1
        with self.pool.connection() as connection:
            connection.execute(
                "INSERT INTO collect_battles (server, battle_id, status, reason, code, found_id, size, sha256,"
                " attempts, detail, bot, job_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (server, battle_id) DO UPDATE SET status = excluded.status,"
                " reason = excluded.reason, code = excluded.code, found_id = excluded.found_id,"
                " size = excluded.size, sha256 = excluded.sha256, attempts = excluded.attempts,"
                " detail = excluded.detail, bot = excluded.bot, job_id = excluded.job_id, updated_at = now()",
                (server, battle_id, outcome.status, outcome.reason, outcome.code, outcome.found_id,
                 outcome.size, outcome.sha256, outcome.attempts, outcome.detail, outcome.bot, job_id),
            )
            connection.execute(
                "UPDATE collect_jobs SET fetched = fetched + %s, not_found = not_found + %s,"
                " failed = failed + %s, mismatch = mismatch + %s, updated_at = now() WHERE id = %s",
                (counts["fetched"], counts["not_found"], counts["failed"], counts["mismatch"], job_id),
            )

    def record_skip(self, job_id: int) -> None:
        with self.pool.connection() as connection:
            connection.execute(
                "UPDATE collect_jobs SET skipped = skipped + 1, updated_at = now() WHERE id = %s", (job_id,)
            )

    def known_bounds(self, server: str) -> tuple[int | None, int | None]:
        """Return the lowest and highest battle id that was fetched or is loaded in ``battles``."""
        with self.pool.connection() as connection:
            row = connection.execute(
                "SELECT min(low), max(high) FROM ("
                " SELECT min(battle_id) AS low, max(battle_id) AS high FROM collect_battles"
                "  WHERE server = %s AND status = 'fetched'"
                " UNION ALL"
                " SELECT min(battle_id), max(battle_id) FROM battles WHERE server = %s) AS bounds",
                (server, server),
            ).fetchone()
        return row[0], row[1]

    def highest_fetched(self, server: str) -> int | None:
        with self.pool.connection() as connection:
            row = connection.execute(
                "SELECT max(battle_id) FROM collect_battles WHERE server = %s AND status = 'fetched'", (server,)
            ).fetchone()
        return row[0]

    def recent_errors(self, job_id: int, limit: int = 10) -> list[dict]:
        """Return the job's latest failed and mismatched ids, newest first."""
        with self.pool.connection() as connection:
            return connection.cursor(row_factory=dict_row).execute(
                "SELECT battle_id, status, reason, code, found_id, attempts, detail, bot, updated_at"
                " FROM collect_battles WHERE job_id = %s AND status IN ('failed', 'mismatch')"
                " ORDER BY updated_at DESC, battle_id DESC LIMIT %s",
                (job_id, limit),
            ).fetchall()

    def recorded_since(self, job_id: int, seconds: float) -> int:
        """Return how many of the job's battle ids got an outcome in the last ``seconds``."""
        with self.pool.connection() as connection:
            row = connection.execute(
                "SELECT count(*) FROM collect_battles WHERE job_id = %s"
                " AND updated_at > now() - make_interval(secs => %s)",
                (job_id, seconds),
            ).fetchone()
        return row[0]
