"""Shape parsed battles into one pandas DataFrame per database table.

Each table's columns and dtypes are declared once below, so a frame has the
same columns in the same order whatever the batch holds, even when it is
empty, and the loader can COPY it without looking at the data.

Actions are shaped for the whole batch at once: the parser keeps their
attributes as raw strings, and here they become typed numpy columns, and the
per-unit totals (damage, heals, kills, deaths, escapes) become grouped sums
over those columns. Doing this per action in Python would cost more than
parsing the XML.
"""

import json
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd

from pipelines.battlelogs.model import SPECIAL_CODE_KILL, Battle, loot_category
from pipelines.battlelogs.parse import INT_MAX, SMALLINT_MAX, parse_hit


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
    "player_sides": "int16",
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
    "combat": "string",
}

EVENT_COLUMNS = {
    "battle": "int64",
    "seq": "int32",
    "turn": "Int16",
    "frame": "Int16",
    "actor": "int16",
    "action": "Int16",
    "attack_type": "category",
    "target": "Int16",
    "cell_x": "Int16",
    "cell_y": "Int16",
    "value": "Int32",
    "hit_kind": "Int16",
    "amount": "Int32",
    "effect_code": "category",
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

_ACTION_ATTACK = 5
_ACTION_DEATH = 7
_ACTION_ESCAPE = 9
_NO_TURN = np.iinfo(np.int32).max


@dataclass
class BattleSource:
    """The origin of a parsed battle, as the battles table records it."""

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


def _column(values: list, dtype: str):
    """Convert one column of Python values (None for missing) to ``dtype``."""
    if dtype in ("Int16", "Int32"):
        # Through float64, which numpy fills from a list with None in C;
        # exact for these widths.
        numbers = np.array(values, dtype=np.float64)
        missing = np.isnan(numbers)
        return _masked(np.where(missing, 0, numbers).astype(np.int64), missing, dtype)
    if dtype.startswith("datetime64"):
        seconds = pd.array(values, dtype="Int64")
        return pd.to_datetime(seconds, unit="s", utc=True).astype(dtype)
    if dtype in ("int16", "int32", "int64", "bool"):
        return np.array(values, dtype=dtype)
    return pd.array(values, dtype=dtype)


def _frame(rows, columns: dict[str, str]) -> pd.DataFrame:
    if rows:
        transposed = list(zip(*rows))
    else:
        transposed = [[] for _ in columns]
    return pd.DataFrame(
        {name: _column(list(values), dtype) for (name, dtype), values in zip(columns.items(), transposed)},
        columns=list(columns),
    )


def _masked(values: np.ndarray, mask: np.ndarray, dtype: str) -> pd.arrays.IntegerArray:
    """Build a nullable integer array; ``mask`` is True where a value is missing."""
    numpy_dtype = pd.api.types.pandas_dtype(dtype).numpy_dtype
    return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(numpy_dtype), mask)


def _sparse_categories(total: int, where: np.ndarray, values) -> pd.Categorical:
    """Build a categorical column of ``total`` rows from the ``values`` at ``where``.

    Attack types and effect codes are a handful of short strings on a
    minority of the actions, so codes into a small category list cost far
    less than a string per row.
    """
    codes, categories = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    full = np.full(total, -1, dtype=np.int32)
    full[where] = codes
    return pd.Categorical.from_codes(full, categories=categories.astype(object))


def _parse_int_strings(values: list, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert raw attribute strings to integers.

    Returns ``(numbers, missing, bad)``: ``missing`` marks absent values and
    values that did not parse or fall outside ``[-limit, limit]``; ``bad``
    marks just the latter, which the battle counts as bad values.
    """
    try:
        numbers = np.array(values, dtype=np.int64)
        missing = np.zeros(len(numbers), dtype=bool)
    except (TypeError, ValueError, OverflowError):
        # Some value is absent or not a number: convert one by one.
        numbers = np.zeros(len(values), dtype=np.int64)
        missing = np.ones(len(values), dtype=bool)
        bad = np.zeros(len(values), dtype=bool)
        for position, value in enumerate(values):
            if value is None:
                continue
            try:
                number = int(value)
            except ValueError:
                bad[position] = True
                continue
            if -limit <= number <= limit:
                numbers[position] = number
                missing[position] = False
            else:
                bad[position] = True
        return numbers, missing, bad
    bad = (numbers < -limit) | (numbers > limit)
    if bad.any():
        missing = missing | bad
    return numbers, missing, bad


_INT_HIT_FIELDS = (0, 1, 3, 4)  # hit_kind, amount, effect_amount, heal
_EFFECT_CODE_FIELD = 2


_hit_rows: dict[str, tuple] = {}
_NO_DESCRIPTOR = (0, 0, 0, 0, True, True, True, True, None, False)


def _hit_row(descriptor: str) -> tuple:
    # One row per distinct descriptor, kept for the life of the process:
    # the four integer fields, their four missing flags, the effect code and
    # whether the descriptor was bad.
    row = _hit_rows.get(descriptor)
    if row is None:
        try:
            hit = parse_hit(descriptor)
            bad = False
        except ValueError:
            hit = (None, None, None, None, None)
            bad = True
        numbers = [hit[field] for field in _INT_HIT_FIELDS]
        row = (
            *(0 if value is None else value for value in numbers),
            *(value is None for value in numbers),
            hit[_EFFECT_CODE_FIELD],
            bad,
        )
        if len(_hit_rows) < 200_000:
            _hit_rows[descriptor] = row
    return row


def _hit_table(descriptors: list):
    """Split each attack's HP descriptor into hit columns.

    Returns ``(numbers, missing, effect_codes, bad)``: ``numbers`` and
    ``missing`` have one row per integer field (hit kind, amount, effect
    amount, heal) and one column per attack; ``bad`` marks descriptors that
    did not parse. Each distinct descriptor is parsed once.
    """
    codes, uniques = pd.factorize(pd.Series(descriptors, dtype=object), use_na_sentinel=True)
    rows = [_hit_row(descriptor) for descriptor in uniques]
    rows.append(_NO_DESCRIPTOR)  # code -1: the attack has no descriptor
    columns = list(zip(*rows))
    numbers = np.array(columns[0:4], dtype=np.int64)[:, codes]
    missing = np.array(columns[4:8], dtype=bool)[:, codes]
    effect_codes = np.array(columns[8], dtype=object)[codes]
    bad = np.array(columns[9], dtype=bool)[codes]
    return numbers, missing, effect_codes, bad


def build_frames(
    battles: list[Battle],
    sources: list[BattleSource],
    keys: list[int] | None = None,
) -> Frames:
    """Build the frames for a batch; ``keys`` are the battles' surrogate ids.

    Without ``keys`` the battles are numbered from 1, which is enough for
    inspecting frames without a database. Bad values found while converting
    actions add to each battle's ``bad_values`` in the frame. The battles
    themselves are not changed, so a batch can be shaped again.
    """
    if keys is None:
        keys = list(range(1, len(battles) + 1))
    key_array = np.asarray(keys, dtype=np.int64)
    count = len(battles)

    # Participants get a batch-wide index: offset of their battle plus pid.
    unit_counts = np.array([len(b.participants) for b in battles], dtype=np.int64)
    unit_offsets = np.concatenate(([0], np.cumsum(unit_counts)[:-1])).astype(np.int64)
    unit_total = int(unit_counts.sum())
    is_monster = np.array([p.is_monster for b in battles for p in b.participants], dtype=bool)
    # What a kill of each unit counts as in a player's combat breakdown.
    victim_kinds = np.array(
        [(p.monster_kind or "unknown") if p.is_monster else "player" for b in battles for p in b.participants],
        dtype=object,
    )

    action_counts = np.array([len(b.action_codes) for b in battles], dtype=np.int64)
    action_offsets = np.concatenate(([0], np.cumsum(action_counts)[:-1])).astype(np.int64)
    total = int(action_counts.sum())
    action_battle = np.repeat(np.arange(count), action_counts)

    codes_raw = list(chain.from_iterable(b.action_codes for b in battles))
    frames_raw = list(chain.from_iterable(b.action_frames for b in battles))
    action, action_missing, action_bad = _parse_int_strings(codes_raw, SMALLINT_MAX)
    frame, frame_missing, frame_bad = _parse_int_strings(frames_raw, SMALLINT_MAX)
    bad_per_battle = np.bincount(action_battle[action_bad | frame_bad], minlength=count)

    # Turn and actor come from the segments: one per USER block in a TURN,
    # starting at an action index of its battle. Shifted by the battle's
    # offset, the segments of the batch line up end to end.
    segment_starts, segment_turns, segment_actors = [], [], []
    for index, battle in enumerate(battles):
        if battle.segments:
            starts, turns, actors = zip(*battle.segments)
            segment_starts.append(np.asarray(starts, dtype=np.int64) + action_offsets[index])
            segment_turns.append(turns)
            segment_actors.append(actors)
    if segment_starts:
        starts = np.concatenate(segment_starts)
        lengths = np.diff(np.append(starts, total))
        turn = np.repeat(np.concatenate(segment_turns).astype(np.int64), lengths)
        actor = np.repeat(np.concatenate(segment_actors).astype(np.int64), lengths)
    else:
        turn = np.zeros(total, dtype=np.int64)
        actor = np.zeros(total, dtype=np.int64)
    actor_unit = actor + np.repeat(unit_offsets, action_counts)

    # Details, scattered back to their actions.
    def detail_columns(name: str, width: int):
        # Returns the batch-wide action index of each detail row and its other
        # columns as lists.
        where_parts = []
        columns = [[] for _ in range(width - 1)]
        for index, battle in enumerate(battles):
            rows = getattr(battle, name)
            if not rows:
                continue
            transposed = list(zip(*rows))
            where_parts.append(np.asarray(transposed[0], dtype=np.int64) + action_offsets[index])
            for column, values in zip(columns, transposed[1:]):
                column.extend(values)
        where = np.concatenate(where_parts) if where_parts else np.zeros(0, dtype=np.int64)
        return where, columns

    attack_type = pd.Categorical.from_codes(np.full(total, -1, dtype=np.int8), categories=[])
    target = np.full(total, -1, dtype=np.int64)
    cell_x = np.zeros(total, dtype=np.int64)
    cell_y = np.zeros(total, dtype=np.int64)
    cell_missing = np.ones(total, dtype=bool)
    # Rows: hit_kind, amount, effect_amount, heal.
    hit_numbers = np.zeros((4, total), dtype=np.int64)
    hit_missing = np.ones((4, total), dtype=bool)
    effect_code = attack_type
    where, (types, targets, cells, descriptors) = detail_columns("attacks", 5)
    if len(where):
        attack_type = _sparse_categories(total, where, types)
        target[where] = [-1 if t is None else t for t in targets]
        cells = np.asarray(cells, dtype=object)
        aimed = np.flatnonzero(pd.notna(cells))
        for position, cell in zip(where[aimed], cells[aimed]):
            x_text, _, y_text = cell.partition(",")
            try:
                x_value, y_value = int(x_text), int(y_text)
            except ValueError:
                bad_per_battle[action_battle[position]] += 1
                continue
            if abs(x_value) <= SMALLINT_MAX and abs(y_value) <= SMALLINT_MAX:
                cell_x[position], cell_y[position] = x_value, y_value
                cell_missing[position] = False
        numbers, missing, effect_codes, bad_hits = _hit_table(descriptors)
        hit_numbers[:, where] = numbers
        hit_missing[:, where] = missing
        effect_code = _sparse_categories(total, where, effect_codes)
        bad_per_battle += np.bincount(action_battle[where[bad_hits]], minlength=count)

    code = np.zeros(total, dtype=np.int64)
    code_missing = np.ones(total, dtype=bool)
    where, (raw_codes, targets) = detail_columns("specials", 3)
    if len(where):
        numbers, missing, bad = _parse_int_strings(raw_codes, SMALLINT_MAX)
        code[where], code_missing[where] = numbers, missing
        target[where] = [-1 if t is None else t for t in targets]
        bad_per_battle += np.bincount(action_battle[where[bad]], minlength=count)

    value = np.zeros(total, dtype=np.int64)
    value_missing = np.ones(total, dtype=bool)
    where, (raw_values,) = detail_columns("values", 2)
    if len(where):
        numbers, missing, bad = _parse_int_strings(raw_values, INT_MAX)
        value[where], value_missing[where] = numbers, missing
        bad_per_battle += np.bincount(action_battle[where[bad]], minlength=count)

    item_id = np.zeros(total, dtype=np.int64)
    item_missing = np.ones(total, dtype=bool)
    where, (_, item_ids, _, _) = detail_columns("pickups", 5)
    if len(where):
        item_id[where] = item_ids
        item_missing[where] = False

    # Per-unit totals. A hit counts as damage when its amount is positive and
    # it has a target; a heal counts for its target.
    has_target = target >= 0
    target_unit = np.where(has_target, target + np.repeat(unit_offsets, action_counts), 0)
    is_attack = (action == _ACTION_ATTACK) & ~action_missing & has_target
    amount, heal = hit_numbers[1], hit_numbers[3]
    damaging = is_attack & (amount > 0)
    damage_dealt = np.bincount(actor_unit[damaging], weights=amount[damaging], minlength=unit_total)
    damage_taken = np.bincount(target_unit[damaging], weights=amount[damaging], minlength=unit_total)
    healing = is_attack & (heal > 0)
    healed = np.bincount(target_unit[healing], weights=heal[healing], minlength=unit_total)

    is_kill = (code == SPECIAL_CODE_KILL) & ~code_missing & has_target
    killer_units = actor_unit[is_kill]
    victim_units = target_unit[is_kill]
    monster_victim = is_monster[victim_units]
    kills_monsters = np.bincount(killer_units[monster_victim], minlength=unit_total)
    player_kill = ~monster_victim & (killer_units != victim_units)
    kills_players = np.bincount(killer_units[player_kill], minlength=unit_total)

    combat = _combat_breakdown(
        ~is_monster, actor_unit, target_unit, damaging, healing, hit_numbers, hit_missing,
        is_attack, effect_code, killer_units, victim_units, victim_kinds,
    )

    died_turn = np.full(unit_total, _NO_TURN, dtype=np.int64)
    deaths = (action == _ACTION_DEATH) & ~action_missing
    np.minimum.at(died_turn, actor_unit[deaths], turn[deaths])
    escaped_turn = np.full(unit_total, _NO_TURN, dtype=np.int64)
    escapes = (action == _ACTION_ESCAPE) & ~action_missing
    np.minimum.at(escaped_turn, actor_unit[escapes], turn[escapes])

    # Frames.
    seq = np.arange(total, dtype=np.int64) - np.repeat(action_offsets, action_counts) + 1
    events = pd.DataFrame({
        "battle": np.repeat(key_array, action_counts),
        "seq": seq.astype(np.int32),
        "turn": _masked(turn, np.zeros(total, dtype=bool), "Int16"),
        "frame": _masked(frame, frame_missing, "Int16"),
        "actor": actor.astype(np.int16),
        "action": _masked(action, action_missing, "Int16"),
        "attack_type": attack_type,
        "target": _masked(target, ~has_target, "Int16"),
        "cell_x": _masked(cell_x, cell_missing, "Int16"),
        "cell_y": _masked(cell_y, cell_missing, "Int16"),
        "value": _masked(value, value_missing, "Int32"),
        "hit_kind": _masked(hit_numbers[0], hit_missing[0], "Int16"),
        "amount": _masked(amount, hit_missing[1], "Int32"),
        "effect_code": effect_code,
        "effect_amount": _masked(hit_numbers[2], hit_missing[2], "Int32"),
        "heal": _masked(heal, hit_missing[3], "Int32"),
        "code": _masked(code, code_missing, "Int16"),
        "item_id": _masked(item_id, item_missing, "Int64"),
    })

    kill_rows = np.flatnonzero(is_kill)
    kills = pd.DataFrame({
        "battle": key_array[action_battle[kill_rows]],
        "seq": seq[kill_rows].astype(np.int32),
        "turn": _masked(turn[kill_rows], np.zeros(len(kill_rows), dtype=bool), "Int16"),
        "frame": _masked(frame[kill_rows], frame_missing[kill_rows], "Int16"),
        "killer": actor[kill_rows].astype(np.int16),
        "victim": target[kill_rows].astype(np.int16),
    })

    participant_rows = []
    loot_rows = []
    battle_rows = []
    templates = {}
    for index, (key, battle, source) in enumerate(zip(keys, battles, sources)):
        offset = unit_offsets[index]
        for p in battle.participants:
            unit = offset + p.pid
            died = min(died_turn[unit], _NO_TURN if p.hp_zero_turn is None else p.hp_zero_turn)
            escaped = escaped_turn[unit]
            participant_rows.append((
                key, p.pid, p.login, p.is_monster, p.in_roster, p.side, p.level,
                p.clan, p.profession, p.creature_type, p.rank_points, p.pve_points,
                p.max_hp, p.image, p.monster_kind, p.elite, p.elite_spec,
                died == _NO_TURN, None if died == _NO_TURN else int(died),
                escaped != _NO_TURN, None if escaped == _NO_TURN else int(escaped),
                p.joined_turn, p.joined_frame, int(kills_monsters[unit]),
                int(kills_players[unit]), int(damage_dealt[unit]), int(damage_taken[unit]),
                int(healed[unit]), combat.get(unit),
            ))
        loot_rows.extend(_loot_rows(key, battle, turn, action_offsets[index]))
        bad_values = battle.bad_values + int(bad_per_battle[index])
        flags = battle.flags | {"bad_values"} if bad_values else battle.flags
        battle_rows.append((
            key, source.server, battle.battle_id, battle.started_at, battle.ended_at,
            battle.turns, battle.turns_seen, battle.type, battle.x, battle.y,
            battle.turn_seconds, battle.map_hash, battle.players, battle.monsters,
            len(battle.action_codes), battle.copies, _pg_array(flags),
            json.dumps(dict(battle.unknown), ensure_ascii=False) if battle.unknown else None,
            bad_values, source.sha256, source.size, source.source_path,
            source.archive_path,
            len({p.side for p in battle.participants if not p.is_monster and p.side is not None}),
        ))
        if battle.map_hash is not None and battle.map_hash not in templates:
            rows = battle.map_rows
            templates[battle.map_hash] = (
                battle.map_hash, max(map(len, rows)), len(rows), _pg_array_text(rows),
            )

    return Frames(
        battles=_frame(battle_rows, BATTLE_COLUMNS),
        participants=_frame(participant_rows, PARTICIPANT_COLUMNS),
        events=events,
        kills=kills,
        loot=_frame(loot_rows, LOOT_COLUMNS),
        map_templates=_frame(list(templates.values()), MAP_TEMPLATE_COLUMNS),
    )


_HIT_KIND_NAMES = {0: "normal", 1: "critical", 2: "piercing"}


def _combat_breakdown(
    is_player, actor_unit, target_unit, damaging, healing, hit_numbers, hit_missing,
    is_attack, effect_code, killer_units, victim_units, victim_kinds,
) -> dict[int, str]:
    """Return each player unit's combat breakdown as JSON text, by batch-wide unit index.

    The keys are flat, so that SQL can add them up with ``jsonb_each_text``:
    ``dealt.<hit kind>`` and ``taken.<hit kind>`` (positive hit amounts;
    normal, critical, piercing, or ``kind<N>`` for another code),
    ``effect_dealt.<code>`` and ``effect_taken.<code>`` (effect strengths),
    ``heals_given`` and ``kills.<victim kind>`` (a monster kind or
    ``player``; self-kills excluded). Monsters get no breakdown.
    """
    totals: dict[int, dict[str, int]] = {}

    def add(units, names, values):
        if not len(units):
            return
        frame = pd.DataFrame({"unit": units, "name": names, "value": values})
        for (unit, name), value in frame.groupby(["unit", "name"], sort=False)["value"].sum().items():
            totals.setdefault(int(unit), {})[name] = int(value)

    hit_kind, amount, effect_amount, heal = hit_numbers
    hit_names = np.array([_HIT_KIND_NAMES.get(k, f"kind{k}") for k in range(-1, 3)], dtype=object)

    def kind_names(kinds):
        known = (kinds >= -1) & (kinds <= 2)
        names = np.empty(len(kinds), dtype=object)
        names[known] = hit_names[kinds[known] + 1]
        names[~known] = [f"kind{k}" for k in kinds[~known]]
        return names

    for side, units in (("dealt", actor_unit), ("taken", target_unit)):
        mask = damaging & is_player[units]
        add(units[mask], side + "." + kind_names(hit_kind[mask]), amount[mask])

    effect_codes = np.asarray(effect_code.codes)
    categories = np.asarray(effect_code.categories, dtype=object)
    has_effect = is_attack & ~hit_missing[2] & (effect_codes >= 0)
    for side, units in (("effect_dealt", actor_unit), ("effect_taken", target_unit)):
        mask = has_effect & is_player[units]
        add(units[mask], side + "." + categories[effect_codes[mask]], effect_amount[mask])

    mask = healing & is_player[actor_unit]
    add(actor_unit[mask], np.full(int(mask.sum()), "heals_given", dtype=object), heal[mask])

    mask = is_player[killer_units] & (killer_units != victim_units)
    add(killer_units[mask], "kills." + victim_kinds[victim_units[mask]], np.ones(int(mask.sum()), dtype=np.int64))

    return {
        unit: json.dumps(values, ensure_ascii=False, sort_keys=True)
        for unit, values in totals.items()
    } | {unit: "{}" for unit in np.flatnonzero(is_player).tolist() if unit not in totals}


def _loot_rows(key: int, battle: Battle, turn: np.ndarray, offset: int) -> list[tuple]:
    # Each participant's pickup of an item id counts once. A pickup is on the
    # map when its id is among the map objects, and unknown when there are none.
    rows = []
    seen = set()
    objects = battle.map_objects
    for index, pid, item_id, name, qty in battle.pickups:
        if (pid, item_id) in seen:
            continue
        seen.add((pid, item_id))
        item = objects.get(item_id)
        template = item.template if item is not None else None
        if name is None and item is not None:
            name = item.name
        on_map = (item is not None) if objects else None
        rows.append((
            key, pid, item_id, template, name, loot_category(name), qty,
            int(turn[offset + index]), on_map,
        ))
    return rows


def _pg_array(values) -> str:
    # Flags are lower-case identifiers, so no element needs quoting.
    return "{" + ",".join(sorted(values)) + "}"


def _pg_array_text(values: list[str]) -> str:
    # MAP rows are letters, but quote each element anyway so that an odd row
    # (a comma, a brace or a quote) cannot break the array literal.
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"
