-- mart_monster_daily: per battle day, monster kind and elite marker, how
-- many such monsters fought, how they fared, and how the players in those
-- battles fared.

DELETE FROM mart_monster_daily
WHERE day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity');

INSERT INTO mart_monster_daily (
    day, monster_kind, elite, battles, monsters, killed, min_level, max_level,
    avg_level, damage_dealt, damage_taken, players_faced, player_deaths,
    player_survival_rate
)
WITH battle_groups AS (
    -- The monsters of each battle by kind and elite marker, so that the day
    -- totals below count every battle once per group.
    SELECT
        b.day,
        p.battle,
        coalesce(p.monster_kind, 'unknown') AS monster_kind,
        p.elite,
        count(*) AS units,
        count(*) FILTER (WHERE NOT p.survived) AS killed,
        min(p.level) AS min_level,
        max(p.level) AS max_level,
        sum(p.level) AS level_sum,
        count(p.level) AS levels_known,
        sum(p.damage_dealt) AS damage_dealt,
        sum(p.damage_taken) AS damage_taken
    FROM battles b
    JOIN participants p ON p.battle = b.id AND p.is_monster
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
    GROUP BY b.day, p.battle, coalesce(p.monster_kind, 'unknown'), p.elite
),
battle_players AS (
    SELECT
        p.battle,
        count(*) AS players,
        count(*) FILTER (WHERE NOT p.survived) AS deaths
    FROM battles b
    JOIN participants p ON p.battle = b.id AND NOT p.is_monster
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
    GROUP BY p.battle
),
totals AS (
    SELECT
        g.day,
        g.monster_kind,
        g.elite,
        count(*) AS battles,
        sum(g.units) AS monsters,
        sum(g.killed) AS killed,
        min(g.min_level) AS min_level,
        max(g.max_level) AS max_level,
        -- Mean level of the units whose level is known.
        sum(g.level_sum)::float8 / nullif(sum(g.levels_known), 0) AS avg_level,
        sum(g.damage_dealt) AS damage_dealt,
        sum(g.damage_taken) AS damage_taken,
        -- Player participations in these battles, and how many of them died.
        coalesce(sum(bp.players), 0) AS players_faced,
        coalesce(sum(bp.deaths), 0) AS player_deaths
    FROM battle_groups g
    LEFT JOIN battle_players bp ON bp.battle = g.battle
    GROUP BY g.day, g.monster_kind, g.elite
)
SELECT
    day, monster_kind, elite, battles, monsters, killed, min_level, max_level,
    avg_level, damage_dealt, damage_taken, players_faced, player_deaths,
    -- Share of player participations in these battles that ended alive,
    -- 0 to 1, or NULL when only monsters fought.
    (players_faced - player_deaths)::float8 / nullif(players_faced, 0) AS player_survival_rate
FROM totals;
