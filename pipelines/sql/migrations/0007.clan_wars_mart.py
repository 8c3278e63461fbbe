"""Add mart_clan_war_daily and fill it for the battles already loaded.

Clan wars per battle day and server let /api/clans/wars read a small mart
instead of every PvP battle's units and kills. The fill runs the mart's own
file for every day, so the migration and the mart rebuild share one query.
"""

from pathlib import Path

import psycopg
from yoyo import step

__depends__ = {"0006.clan_index"}

MART = Path(__file__).resolve().parent.parent / "marts" / "25_clan_war_daily.sql"


def fill(connection) -> None:
    # The mart file holds two statements, which only client-side binding runs in one execute.
    with psycopg.ClientCursor(connection) as cursor:
        cursor.execute(MART.read_text(encoding="utf-8"), {"day_from": None, "day_to": None})


steps = [
    step("""
        CREATE TABLE mart_clan_war_daily (
            day date NOT NULL,
            server text NOT NULL,
            clan_a text NOT NULL,               -- clan_a < clan_b
            clan_b text NOT NULL,
            battles integer NOT NULL,           -- battles with members of both on opposite sides
            kills_a integer NOT NULL,           -- members of clan_a killing members of clan_b
            kills_b integer NOT NULL,
            last_battle timestamptz,
            PRIMARY KEY (day, server, clan_a, clan_b)
        )
    """),
    step("CREATE INDEX mart_clan_war_daily_a_idx ON mart_clan_war_daily (clan_a, day)"),
    step("CREATE INDEX mart_clan_war_daily_b_idx ON mart_clan_war_daily (clan_b, day)"),
    step(fill),
]
