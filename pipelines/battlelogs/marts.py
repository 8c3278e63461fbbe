"""Rebuild the analytics marts for a range of battle days.

Each file in ``pipelines/sql/marts/`` (run in name order) deletes a mart's
rows for the days ``%(day_from)s`` to ``%(day_to)s`` (inclusive; NULL means
unbounded) and inserts them again from the battle tables. After an ingestion
only the days it touched are rebuilt; ``tzr-ingest marts`` rebuilds them all.
"""

import time
from datetime import date, timedelta
from logging import getLogger
from pathlib import Path

import psycopg


_log = getLogger(__name__)

MARTS_DIR = Path(__file__).parent.parent / "sql" / "marts"


def mart_files() -> list[Path]:
    return sorted(MARTS_DIR.glob("*.sql"))


def day_ranges(days: list[date]) -> list[tuple[date, date]]:
    """Merge days into inclusive ranges of consecutive days."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day - ranges[-1][1] <= timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def refresh(connection: psycopg.Connection, days: list[date] | None) -> None:
    """Rebuild the marts for ``days``, or for every day when ``days`` is None.

    Runs in one transaction, so readers see either the old or the new marts.
    """
    ranges = [(None, None)] if days is None else day_ranges(days)
    if not ranges:
        return
    started = time.monotonic()
    # A client-side cursor, because a mart file contains several statements and
    # server-side binding accepts one statement per execute.
    with connection.transaction(), psycopg.ClientCursor(connection) as cursor:
        if days is not None:
            # A day-range refresh reads a few thousand battles, and compiling
            # such a plan with JIT took longer than running it (about 0.5 s a
            # statement on PostgreSQL 15). A full rebuild keeps the setting.
            cursor.execute("SET LOCAL jit = off")
        for path in mart_files():
            sql = path.read_text(encoding="utf-8")
            for day_from, day_to in ranges:
                cursor.execute(sql, {"day_from": day_from, "day_to": day_to})
    _log.info(
        "rebuilt %d mart file(s) for %s in %.2f s",
        len(mart_files()),
        "every day" if days is None else f"{len(ranges)} day range(s)",
        time.monotonic() - started,
    )
