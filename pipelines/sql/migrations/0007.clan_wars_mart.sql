-- depends: 0006.clan_index

-- Clan wars per battle day and server, so that /api/clans/wars reads a
-- small mart instead of every PvP battle's units and kills. Filled by
-- pipelines/sql/marts/25_clan_war_daily.sql for the days each run touches;
-- the INSERT below fills it once for the battles already loaded.
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
);

CREATE INDEX mart_clan_war_daily_a_idx ON mart_clan_war_daily (clan_a, day);
CREATE INDEX mart_clan_war_daily_b_idx ON mart_clan_war_daily (clan_b, day);

INSERT INTO mart_clan_war_daily (day, server, clan_a, clan_b, battles, kills_a, kills_b, last_battle)
WITH units AS MATERIALIZED (
    SELECT b.day, b.server, p.battle, p.pid, p.side, p.clan, coalesce(b.started_at, b.ended_at) AS at
    FROM participants p JOIN battles b ON b.id = p.battle
    WHERE NOT p.is_monster AND p.clan IS NOT NULL AND b.player_sides >= 2
),
sides AS (SELECT DISTINCT day, server, battle, side, clan, at FROM units),
pairs AS (
    SELECT a.day, a.server, a.clan AS clan_a, c.clan AS clan_b,
           count(DISTINCT a.battle) AS battles, max(a.at) AS last_battle
    FROM sides a JOIN sides c ON c.battle = a.battle AND c.side IS DISTINCT FROM a.side AND a.clan < c.clan
    GROUP BY a.day, a.server, a.clan, c.clan
),
clan_kills AS (
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
