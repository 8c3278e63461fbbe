-- depends: 0001.battlelogs

-- Analytics marts over the battle tables. The files in pipelines/sql/marts
-- fill them for a range of battle days (the UTC day of a battle's start, or
-- of its end when the start is missing), and every mart except the sessions
-- is keyed by that day, so a refresh deletes and rebuilds whole days.
-- NOTE: marts key players and clans by name alone, so the same login on two
-- game servers counts as one player.

-- The maximum idle time between two battles of one player that still counts
-- as one play session. Changing it changes mart_player_sessions and
-- mart_bot_suspicion, so a change needs a new migration and a full rebuild
-- (`tzr-ingest marts`).
CREATE FUNCTION mart_session_max_idle() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT interval '30 minutes' $$;

-- One row per player participation with the battle's times. A battle
-- without a start time is placed at its end, and one without an end time
-- lasts zero seconds. An end before the start, or more than 6 hours after
-- it, is a defect of the log, so such a battle also lasts zero seconds. The
-- bound keeps one bad end time from stretching a session, and with it the
-- span of every later day-range refresh, over days or years.
CREATE VIEW player_battles AS
SELECT
    p.login,
    b.id AS battle,
    b.day,
    coalesce(b.started_at, b.ended_at) AS started_at,
    CASE
        WHEN b.started_at IS NULL OR b.ended_at IS NULL THEN coalesce(b.ended_at, b.started_at)
        WHEN b.ended_at < b.started_at OR b.ended_at > b.started_at + interval '6 hours' THEN b.started_at
        ELSE b.ended_at
    END AS ended_at,
    p.survived,
    p.kills_monsters,
    p.kills_players
FROM participants p
JOIN battles b ON b.id = p.battle
WHERE NOT p.is_monster;

-- The marts read a day's players by battle. Without this index each lookup
-- also reads the battle's monsters, which outnumber the players in PvE.
CREATE INDEX participants_player_battle_idx ON participants (battle) WHERE NOT is_monster;

-- Monsters per battle, grouped by kind and elite marker.
CREATE VIEW battle_monsters AS
SELECT
    battle,
    coalesce(monster_kind, 'unknown') AS monster_kind,
    elite,
    elite_spec,
    count(*) AS units,
    min(level) AS min_level,
    max(level) AS max_level
FROM participants
WHERE is_monster
GROUP BY battle, coalesce(monster_kind, 'unknown'), elite, elite_spec;

CREATE TABLE mart_player_daily (
    day date NOT NULL,
    login text NOT NULL,
    battles integer NOT NULL,
    pvp_battles integer NOT NULL,       -- players on at least two sides
    pve_battles integer NOT NULL,       -- at least one monster
    survived integer NOT NULL,
    deaths integer NOT NULL,
    escapes integer NOT NULL,
    kills_monsters integer NOT NULL,
    kills_players integer NOT NULL,
    damage_dealt bigint NOT NULL,
    damage_taken bigint NOT NULL,
    healed bigint NOT NULL,
    turns integer NOT NULL,             -- sum of battles.turns_seen
    loot_qty bigint NOT NULL,           -- items picked up, unmatched pickups excluded
    first_battle_at timestamptz NOT NULL,
    last_battle_at timestamptz NOT NULL,
    max_level smallint,
    clan text,                          -- the clan in the player's latest battle of the day
    survival_rate double precision NOT NULL,
    kills_per_battle double precision NOT NULL,
    kills_per_turn double precision,    -- NULL when no turns were logged
    PRIMARY KEY (day, login)
);

CREATE INDEX mart_player_daily_login_idx ON mart_player_daily (login, day);

CREATE TABLE mart_clan_daily (
    day date NOT NULL,
    clan text NOT NULL,
    members integer NOT NULL,           -- distinct logins
    battles integer NOT NULL,           -- distinct battles with a member in them
    participations integer NOT NULL,    -- member-battle pairs
    survived integer NOT NULL,
    kills_monsters integer NOT NULL,
    kills_players integer NOT NULL,
    damage_dealt bigint NOT NULL,
    damage_taken bigint NOT NULL,
    survival_rate double precision NOT NULL,
    battles_per_member double precision NOT NULL,
    PRIMARY KEY (day, clan)
);

-- Items entering the game through pickups, by battle day and map location.
-- name, x and y can be NULL in the logs, so the key treats NULLs as equal.
CREATE TABLE mart_resource_daily (
    day date NOT NULL,
    name text,
    category text NOT NULL,
    x smallint,
    y smallint,
    qty bigint NOT NULL,
    pickups integer NOT NULL,
    battles integer NOT NULL,
    players integer NOT NULL,
    CONSTRAINT mart_resource_daily_key UNIQUE NULLS NOT DISTINCT (day, name, category, x, y)
);

CREATE TABLE mart_monster_daily (
    day date NOT NULL,
    monster_kind text NOT NULL,
    elite boolean NOT NULL,
    battles integer NOT NULL,
    monsters integer NOT NULL,          -- units
    killed integer NOT NULL,            -- units that did not survive
    min_level smallint,
    max_level smallint,
    avg_level double precision,
    damage_dealt bigint NOT NULL,       -- by these monsters
    damage_taken bigint NOT NULL,       -- by these monsters
    players_faced integer NOT NULL,     -- player participations in these battles
    player_deaths integer NOT NULL,
    player_survival_rate double precision,  -- NULL when no player took part
    PRIMARY KEY (day, monster_kind, elite)
);

-- A session is a run of one player's battles in which every battle starts at
-- most mart_session_max_idle() after the latest end of the earlier ones.
-- Sessions of a player never overlap, so (login, started_at) is unique.
CREATE TABLE mart_player_sessions (
    login text NOT NULL,
    started_at timestamptz NOT NULL,    -- first battle start
    ended_at timestamptz NOT NULL,      -- latest battle end
    day date NOT NULL,                  -- UTC day of started_at
    battles integer NOT NULL,
    playtime_seconds integer NOT NULL,  -- ended_at - started_at
    idle_seconds integer NOT NULL,      -- idle between battles, an overlap counting as 0
    overlapping_battles integer NOT NULL,  -- battles that started before an earlier one ended
    PRIMARY KEY (login, started_at)
);

CREATE INDEX mart_player_sessions_day_idx ON mart_player_sessions (day);
-- The bot mart looks up a player's sessions that end on or after a day.
CREATE INDEX mart_player_sessions_login_end_idx ON mart_player_sessions (login, ended_at);
-- A refresh looks up the sessions that overlap the refreshed time span.
CREATE INDEX mart_player_sessions_span_idx ON mart_player_sessions
    USING gist (tstzrange(started_at, ended_at, '[]'));

-- Signs of automated play, per player and day with at least 5 battles.
CREATE TABLE mart_bot_suspicion (
    day date NOT NULL,
    login text NOT NULL,
    battles integer NOT NULL,
    active_hours smallint NOT NULL,     -- distinct UTC hours with a battle start
    idles integer NOT NULL,             -- in-session idles measured
    idle_median_seconds double precision,
    idle_cv double precision,           -- sample standard deviation / mean of the idles
    short_idle_share double precision,  -- share of idles under 10 s
    longest_session_hours double precision NOT NULL,
    survival_rate double precision NOT NULL,
    kills_per_battle double precision NOT NULL,
    score double precision NOT NULL,    -- 0 (human-like) to 1 (bot-like)
    reasons text[] NOT NULL,            -- score components of 0.7 or more
    PRIMARY KEY (day, login)
);

CREATE INDEX mart_bot_suspicion_score_idx ON mart_bot_suspicion (score DESC);
