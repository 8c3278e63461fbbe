-- mart_clan_war_daily: pairs of clans whose members fought on opposite sides
-- of the same battle, per battle day and server, with the kills each way.

DELETE FROM mart_clan_war_daily
WHERE day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity');

INSERT INTO mart_clan_war_daily (day, server, clan_a, clan_b, battles, kills_a, kills_b, last_battle)
WITH units AS MATERIALIZED (
    -- Clan members in PvP battles (players on two or more sides).
    SELECT b.day, b.server, p.battle, p.pid, p.side, p.clan, coalesce(b.started_at, b.ended_at) AS at
    FROM participants p JOIN battles b ON b.id = p.battle
    WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
      AND NOT p.is_monster AND p.clan IS NOT NULL AND b.player_sides >= 2
),
sides AS (SELECT DISTINCT day, server, battle, side, clan, at FROM units),
pairs AS (
    -- Two clans are at war in a battle when members of each stood on
    -- different sides; a battle counts once per pair.
    SELECT a.day, a.server, a.clan AS clan_a, c.clan AS clan_b,
           count(DISTINCT a.battle) AS battles, max(a.at) AS last_battle
    FROM sides a JOIN sides c ON c.battle = a.battle AND c.side IS DISTINCT FROM a.side AND a.clan < c.clan
    GROUP BY a.day, a.server, a.clan, c.clan
),
clan_kills AS (
    -- Kills of one clan's members by another's, in the same battles.
    SELECT killer.day, killer.server, killer.clan AS killer_clan, victim.clan AS victim_clan, count(*) AS n
    FROM kills k
    JOIN units killer ON killer.battle = k.battle AND killer.pid = k.killer
    JOIN units victim ON victim.battle = k.battle AND victim.pid = k.victim
    GROUP BY killer.day, killer.server, killer.clan, victim.clan
)
SELECT pairs.day, pairs.server, pairs.clan_a, pairs.clan_b, pairs.battles,
       coalesce(ka.n, 0), coalesce(kb.n, 0), pairs.last_battle
FROM pairs
LEFT JOIN clan_kills ka ON (ka.day, ka.server, ka.killer_clan, ka.victim_clan)
    = (pairs.day, pairs.server, pairs.clan_a, pairs.clan_b)
LEFT JOIN clan_kills kb ON (kb.day, kb.server, kb.killer_clan, kb.victim_clan)
    = (pairs.day, pairs.server, pairs.clan_b, pairs.clan_a);
