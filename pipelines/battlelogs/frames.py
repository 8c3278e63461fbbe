"""Shape parsed battles into one pandas DataFrame per database table.

Each table's columns and dtypes are declared once below, so a frame has the
same columns in the same order whatever the batch holds, even when it is
empty, and the loader can COPY it without looking at the data.
"""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.battlelogs.model import Battle, loot_category


BATTLE_COLUMNS = {
    "id": "int64",
    "server": "string",
    "battle_id": "int64",
    "started_at": "datetime64[s, UTC]",
    "ended_at": "datetime64[s, UTC]",
    "turns": "Int16",
    "turns_seen": "int16",
    "type": "string",
    "x": "Int16",
    "y": "Int16",
    "turn_seconds": "Int16",
    "map_hash": "string",
    "players": "int16",
    "monsters": "int16",
    "events": "int32",
    "copies": "int16",
    "flags": "string",
    "unknown_markup": "string",
    "bad_values": "int32",
    "sha256": "string",
    "size": "int32",
    "source_path": "string",
    "archive_path": "string",
}

PARTICIPANT_COLUMNS = {
    "battle": "int64",
    "pid": "int16",
    "login": "string",
    "is_monster": "bool",
    "in_roster": "bool",
    "side": "Int16",
    "level": "Int16",
    "clan": "string",
    "profession": "Int16",
    "creature_type": "Int16",
    "rank_points": "Float64",
    "pve_points": "Int64",
    "max_hp": "Int32",
    "image": "string",
    "monster_kind": "string",
    "elite": "bool",
    "elite_spec": "string",
    "survived": "bool",
    "died_turn": "Int16",
    "escaped": "bool",
    "escaped_turn": "Int16",
    "joined_turn": "int16",
    "joined_frame": "Int16",
    "kills_monsters": "int16",
    "kills_players": "int16",
    "damage_dealt": "int32",
    "damage_taken": "int32",
    "healed": "int32",
}

# Order of the tuples that the parser appends to Battle.events, after "battle".
EVENT_COLUMNS = {
    "battle": "int64",
    "turn": "Int16",
    "frame": "Int16",
    "seq": "int32",
    "actor": "int16",
    "action": "Int16",
    "attack_type": "string",
    "target": "Int16",
    "cell_x": "Int16",
    "cell_y": "Int16",
    "value": "Int32",
    "hit_kind": "Int16",
    "amount": "Int32",
    "effect_code": "string",
    "effect_amount": "Int32",
    "heal": "Int32",
    "code": "Int16",
    "item_id": "Int64",
}

KILL_COLUMNS = {
    "battle": "int64",
    "seq": "int32",
    "turn": "Int16",
    "frame": "Int16",
    "killer": "int16",
    "victim": "int16",
}

LOOT_COLUMNS = {
    "battle": "int64",
    "pid": "int16",
    "item_id": "int64",
    "template": "string",
    "name": "string",
    "category": "string",
    "qty": "int32",
    "turn": "Int16",
    "on_map": "boolean",
}

MAP_TEMPLATE_COLUMNS = {
    "hash": "string",
    "width": "int16",
    "height": "int16",
    "rows": "string",
}

TABLE_COLUMNS = {
    "battles": BATTLE_COLUMNS,
    "participants": PARTICIPANT_COLUMNS,
    "events": EVENT_COLUMNS,
    "kills": KILL_COLUMNS,
    "loot": LOOT_COLUMNS,
    "map_templates": MAP_TEMPLATE_COLUMNS,
}


@dataclass
class BattleSource:
    """Where a parsed battle came from, as the battles table records it."""

    server: str
    sha256: str
    size: int
    source_path: str
    archive_path: str | None = None


@dataclass
class Frames:
    """One DataFrame per table for a batch of battles."""

    battles: pd.DataFrame
    participants: pd.DataFrame
    events: pd.DataFrame
    kills: pd.DataFrame
    loot: pd.DataFrame
    map_templates: pd.DataFrame

    def tables(self):
        return [(name, getattr(self, name)) for name in TABLE_COLUMNS]


def _frame(rows, columns: dict[str, str]) -> pd.DataFrame:
    names = list(columns)
    if rows:
        data = dict(zip(names, (list(column) for column in zip(*rows))))
    else:
        data = {name: [] for name in names}
    frame = pd.DataFrame(data, columns=names)
    return _with_dtypes(frame, columns)


def _with_dtypes(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    for name, dtype in columns.items():
        if dtype.startswith("datetime64"):
            seconds = pd.array(frame[name], dtype="Int64")
            frame[name] = pd.to_datetime(seconds, unit="s", utc=True).astype(dtype)
        else:
            frame[name] = frame[name].astype(dtype)
    return frame


def _pg_array(values) -> str:
    # Flags are lower-case identifiers, so no element needs quoting.
    return "{" + ",".join(sorted(values)) + "}"


def build_frames(
    battles: list[Battle],
    sources: list[BattleSource],
    keys: list[int] | None = None,
) -> Frames:
    """Build the frames for a batch; ``keys`` are the battles' surrogate ids.

    Without ``keys`` the battles are numbered from 1, which is enough for
    inspecting frames without a database.
    """
    if keys is None:
        keys = list(range(1, len(battles) + 1))

    battle_rows = []
    participant_rows = []
    kill_rows = []
    loot_rows = []
    templates = {}
    event_rows = []
    event_counts = []

    for key, battle, source in zip(keys, battles, sources):
        battle_rows.append((
            key, source.server, battle.battle_id, battle.started_at, battle.ended_at,
            battle.turns, battle.turns_seen, battle.type, battle.x, battle.y,
            battle.turn_seconds, battle.map_hash, battle.players, battle.monsters,
            len(battle.events), battle.copies, _pg_array(battle.flags),
            json.dumps(dict(battle.unknown), ensure_ascii=False) if battle.unknown else None,
            battle.bad_values, source.sha256, source.size, source.source_path,
            source.archive_path,
        ))
        for p in battle.participants:
            participant_rows.append((
                key, p.pid, p.login, p.is_monster, p.in_roster, p.side, p.level,
                p.clan, p.profession, p.creature_type, p.rank_points, p.pve_points,
                p.max_hp, p.image, p.monster_kind, p.elite, p.elite_spec,
                p.died_turn is None, p.died_turn, p.escaped_turn is not None,
                p.escaped_turn, p.joined_turn, p.joined_frame, p.kills_monsters,
                p.kills_players, p.damage_dealt, p.damage_taken, p.healed,
            ))
        for seq, turn, frame, killer, victim in battle.kills:
            kill_rows.append((key, seq, turn, frame, killer, victim))
        for pid, item_id, template, name, qty, turn, on_map in battle.loot:
            loot_rows.append((
                key, pid, item_id, template, name, loot_category(name), qty, turn, on_map,
            ))
        if battle.map_hash is not None and battle.map_hash not in templates:
            rows = battle.map_rows
            templates[battle.map_hash] = (
                battle.map_hash, max(map(len, rows)), len(rows),
                _pg_array_text(rows),
            )
        event_rows.extend(battle.events)
        event_counts.append(len(battle.events))

    events = _frame(event_rows, dict(list(EVENT_COLUMNS.items())[1:]))
    events.insert(0, "battle", np.repeat(np.asarray(keys, dtype="int64"), event_counts))

    return Frames(
        battles=_frame(battle_rows, BATTLE_COLUMNS),
        participants=_frame(participant_rows, PARTICIPANT_COLUMNS),
        events=events,
        kills=_frame(kill_rows, KILL_COLUMNS),
        loot=_frame(loot_rows, LOOT_COLUMNS),
        map_templates=_frame(list(templates.values()), MAP_TEMPLATE_COLUMNS),
    )


def _pg_array_text(values: list[str]) -> str:
    # MAP rows are letters, but quote each element anyway so that an odd row
    # (a comma, a brace or a quote) cannot break the array literal.
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"
