-- mart_player_daily: each player's totals per battle day.

DELETE FROM mart_player_daily
WHERE day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity');

INSERT INTO mart_player_daily (
    day, login, battles, pvp_battles, pve_battles, survived, deaths, escapes,
    kills_monsters, kills_players, damage_dealt, damage_taken, healed, turns,
    loot_qty, first_battle_at, last_battle_at, max_level, clan,
    survival_rate, kills_per_battle, kills_per_turn
)
WITH day_players AS (
    -- The players of the range's battles, read once.
    SELECT
        b.id AS battle,
        b.day,
        b.turns_seen,
        -- PvE: at least one monster took part (battles.monsters counts them).
        b.monsters > 0 AS is_pve,
        coalesce(b.started_at, b.ended_at) AS started_at,
        coalesce(b.ended_at, b.started_at) AS ended_at,
        p.pid,
        p.login,
        p.side,
        p.level,
        p.clan,
        p.survived,
        p.escaped,
        p.kills_monsters,
        p.kills_players,
        p.damage_dealt,
        p.damage_taken,
        p.healed
    FROM battles b
    JOIN participants p ON p.battle = b.id AND NOT p.is_monster
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
),
pvp_battles AS (
    -- PvP: the players stand on at least two sides (a player without a side
    -- is not counted). A battle can be PvP and PvE at once.
    SELECT battle
    FROM day_players
    GROUP BY battle
    HAVING count(DISTINCT side) >= 2
),
picked AS (
    -- Items each unit picked up. A pickup with on_map = false names an item
    -- that is not among the battle's map objects, so it is not counted.
    SELECT l.battle, l.pid, sum(l.qty) AS qty
    FROM loot l
    JOIN battles b ON b.id = l.battle
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
      AND l.on_map IS NOT FALSE
    GROUP BY l.battle, l.pid
),
totals AS (
    SELECT
        u.day,
        u.login,
        count(*) AS battles,
        count(pvp.battle) AS pvp_battles,
        count(*) FILTER (WHERE u.is_pve) AS pve_battles,
        count(*) FILTER (WHERE u.survived) AS survived,
        count(*) FILTER (WHERE NOT u.survived) AS deaths,
        count(*) FILTER (WHERE u.escaped) AS escapes,
        sum(u.kills_monsters) AS kills_monsters,
        sum(u.kills_players) AS kills_players,
        sum(u.damage_dealt) AS damage_dealt,
        sum(u.damage_taken) AS damage_taken,
        sum(u.healed) AS healed,
        sum(u.turns_seen) AS turns,
        coalesce(sum(picked.qty), 0) AS loot_qty,
        min(u.started_at) AS first_battle_at,
        max(u.ended_at) AS last_battle_at,
        max(u.level) AS max_level,
        -- The clan in the latest battle of the day (by start, then by battle
        -- key), NULL when the player had no clan there.
        (array_agg(u.clan ORDER BY u.started_at DESC, u.battle DESC))[1] AS clan
    FROM day_players u
    LEFT JOIN pvp_battles pvp ON pvp.battle = u.battle
    LEFT JOIN picked ON picked.battle = u.battle AND picked.pid = u.pid
    GROUP BY u.day, u.login
)
SELECT
    day, login, battles, pvp_battles, pve_battles, survived, deaths, escapes,
    kills_monsters, kills_players, damage_dealt, damage_taken, healed, turns,
    loot_qty, first_battle_at, last_battle_at, max_level, clan,
    -- Share of the day's battles the player came out of alive, 0 to 1.
    survived::float8 / battles AS survival_rate,
    -- Monster and player kills per battle.
    (kills_monsters + kills_players)::float8 / battles AS kills_per_battle,
    -- Kills per logged turn, or NULL when the logs held no TURN elements.
    (kills_monsters + kills_players)::float8 / nullif(turns, 0) AS kills_per_turn
FROM totals;
