"""The ``tzr-ingest show`` view of one battle: what would be loaded, as JSON."""

import pandas as pd

from pipelines.battlelogs.frames import BattleSource, build_frames
from pipelines.battlelogs.model import Battle


def _iso(timestamp) -> str | None:
    if pd.isna(timestamp):
        return None
    return timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _optional(value):
    if pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()  # a numpy scalar, which json cannot write
    return value


def battle_summary(battle: Battle, server: str) -> dict:
    """Return the ``show`` view of a parsed battle, shaped as it would be loaded.

    Loot lists, per participant and item name, the quantities picked up,
    counting each item id once per participant and leaving out pickups whose
    id is not among the map objects when the log lists any.
    """
    frames = build_frames([battle], [BattleSource(server=server, sha256="", size=0, source_path="")])
    header = frames.battles.iloc[0]
    participants = frames.participants.sort_values("pid")
    logins = dict(zip(participants["pid"], participants["login"]))

    loot = frames.loot[frames.loot["on_map"].fillna(True)]
    loot = loot.assign(name=loot["name"].fillna("")).groupby(["pid", "name"], as_index=False)["qty"].sum()
    return {
        "battle": {
            "id": int(header["battle_id"]),
            "server": server,
            "start": _iso(header["started_at"]),
            "end": _iso(header["ended_at"]),
            "turns": _optional(header["turns"]),
            "type": _optional(header["type"]),
            "x": _optional(header["x"]),
            "y": _optional(header["y"]),
            "flags": [flag for flag in header["flags"].strip("{}").split(",") if flag],
        },
        "participants": [
            {
                "login": row.login,
                "side": _optional(row.side),
                "level": _optional(row.level),
                "is_monster": bool(row.is_monster),
                "survived": bool(row.survived),
                "escaped": bool(row.escaped),
                "joined_turn": int(row.joined_turn),
                "kills_monsters": int(row.kills_monsters),
                "kills_players": int(row.kills_players),
                "damage_dealt": int(row.damage_dealt),
                "damage_taken": int(row.damage_taken),
                "healed": int(row.healed),
            }
            for row in participants.itertuples(index=False)
        ],
        "loot": [
            {"login": logins[row.pid], "item": row.name, "qty": int(row.qty)}
            for row in loot.itertuples(index=False)
        ],
    }
