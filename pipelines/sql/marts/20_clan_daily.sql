-- mart_clan_daily: each clan's totals per battle day, from the participations
-- of players who carried the clan in that battle.

DELETE FROM mart_clan_daily
WHERE day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity');

INSERT INTO mart_clan_daily (
    day, clan, members, battles, participations, survived, kills_monsters,
    kills_players, damage_dealt, damage_taken, survival_rate, battles_per_member
)
WITH totals AS (
    SELECT
        b.day,
        p.clan,
        count(DISTINCT p.login) AS members,
        count(DISTINCT p.battle) AS battles,
        count(*) AS participations,
        count(*) FILTER (WHERE p.survived) AS survived,
        sum(p.kills_monsters) AS kills_monsters,
        sum(p.kills_players) AS kills_players,
        sum(p.damage_dealt) AS damage_dealt,
        sum(p.damage_taken) AS damage_taken
    FROM battles b
    JOIN participants p ON p.battle = b.id
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
      AND NOT p.is_monster
      AND p.clan IS NOT NULL
    GROUP BY b.day, p.clan
)
SELECT
    day, clan, members, battles, participations, survived, kills_monsters,
    kills_players, damage_dealt, damage_taken,
    -- Share of member participations that ended alive, 0 to 1.
    survived::float8 / participations AS survival_rate,
    -- Battles an average member fought that day: participations, not
    -- distinct battles, because members often fight side by side.
    participations::float8 / members AS battles_per_member
FROM totals;
