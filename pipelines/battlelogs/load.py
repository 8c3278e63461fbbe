"""Load frames into PostgreSQL with COPY, inside the caller's transaction.

Frames are written as CSV by pyarrow, which is about three times faster than
``DataFrame.to_csv`` here. It writes a missing value as an unquoted empty
field and quotes every string, so COPY's CSV format reads NULL and the empty
string apart.
"""

import io
from dataclasses import dataclass
from logging import getLogger

import pandas as pd
import psycopg
import pyarrow
import pyarrow.csv

from pipelines.battlelogs.frames import TABLE_COLUMNS, Frames


_log = getLogger(__name__)

_COPIED_TABLES = ("battles", "participants", "events", "kills", "loot")


@dataclass(frozen=True)
class StoredBattle:
    """The stored version of a battle that an incoming file may duplicate."""

    id: int
    battle_id: int
    sha256: str
    day: object


def lock_battles(cursor: psycopg.Cursor, server: str, battle_ids: list[int]) -> None:
    """Take transaction-scoped advisory locks on the battles of a batch.

    Workers that load the same battle at once are serialised here. Locks are
    taken in sorted key order, so two batches request them in the same order
    and do not deadlock.
    """
    keys = sorted(f"{server}:{battle_id}" for battle_id in set(battle_ids))
    cursor.execute(
        "SELECT count(pg_advisory_xact_lock(h)) FROM ("
        " SELECT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) AS k ORDER BY k"
        ") AS ordered",
        (keys,),
    )


def stored_battles(cursor: psycopg.Cursor, server: str, battle_ids: list[int]) -> dict[int, StoredBattle]:
    cursor.execute(
        "SELECT id, battle_id, sha256, day FROM battles"
        " WHERE server = %s AND battle_id = ANY(%s)",
        (server, list(battle_ids)),
    )
    return {row[1]: StoredBattle(*row) for row in cursor.fetchall()}


def delete_battles(cursor: psycopg.Cursor, ids: list[int]) -> None:
    """Delete battles and everything that belongs to them.

    Events have no foreign key (see the schema), so they go first and
    explicitly; the other tables follow by cascade.
    """
    if ids:
        cursor.execute("DELETE FROM events WHERE battle = ANY(%s)", (ids,))
        cursor.execute("DELETE FROM battles WHERE id = ANY(%s)", (ids,))


def allocate_ids(cursor: psycopg.Cursor, count: int) -> list[int]:
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence('battles', 'id'))"
        " FROM generate_series(1, %s)",
        (count,),
    )
    return [row[0] for row in cursor.fetchall()]


_CSV_OPTIONS = pyarrow.csv.WriteOptions(include_header=False)


def copy_frame(cursor: psycopg.Cursor, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    columns = ", ".join(TABLE_COLUMNS[table])
    buffer = io.BytesIO()
    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(frame, preserve_index=False), buffer, _CSV_OPTIONS)
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())


def insert_frames(cursor: psycopg.Cursor, frames: Frames) -> None:
    """Write a batch's frames; map templates already stored are kept as they are."""
    # Sorted, so that two workers adding the same new templates take the
    # unique-index locks in the same order and cannot deadlock.
    templates = frames.map_templates.sort_values("hash")
    if not templates.empty:
        cursor.executemany(
            "INSERT INTO map_templates (hash, width, height, rows)"
            " VALUES (%s, %s, %s, %s::text[]) ON CONFLICT (hash) DO NOTHING",
            [
                (row.hash, int(row.width), int(row.height), row.rows)
                for row in templates.itertuples(index=False)
            ],
        )
    for table in _COPIED_TABLES:
        copy_frame(cursor, table, getattr(frames, table))
