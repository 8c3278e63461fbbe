-- depends: 0002.marts

-- Support for the analytics API (services/battles).

-- A player's combat breakdown in one battle, filled by the loader for
-- players and NULL for monsters: positive hit amounts dealt and taken by hit
-- kind ("dealt.normal", "taken.critical", ...), effect strengths by effect
-- code ("effect_dealt.O", ...), "heals_given", and kills by victim kind
-- ("kills.rat", "kills.player"). Battles loaded before this column existed
-- have NULL here until their files are ingested again.
ALTER TABLE participants ADD COLUMN combat jsonb;

-- Distinct sides that players (not monsters) fought on; 2 or more makes a
-- PvP battle. Filled by the loader.
ALTER TABLE battles ADD COLUMN player_sides smallint;
UPDATE battles b SET player_sides = (
    SELECT count(DISTINCT p.side) FROM participants p WHERE p.battle = b.id AND NOT p.is_monster
);

-- Battle lists are ordered by battle time: the start, or the end when the
-- start is missing.
CREATE INDEX battles_time_idx ON battles ((coalesce(started_at, ended_at)) DESC, battle_id DESC);
