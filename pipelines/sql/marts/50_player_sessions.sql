-- mart_player_sessions: each player's play sessions. A player's battles are
-- taken in start order, and a battle opens a new session when its idle time
-- (its start minus the latest end among the player's earlier battles)
-- exceeds mart_session_max_idle(), 30 minutes.
--
-- A session can span midnight, or days for a player who never rests, so a
-- day-range refresh rebuilds whole sessions. It deletes every stored session
-- that comes within the max idle of the range's battles. For each player
-- involved, it then computes the sessions again over one span (a region).
-- The region starts at the earlier of the range start and the start of the
-- player's earliest deleted session. It ends at the later of the latest end
-- among the range's battles and the end of the player's latest deleted
-- session. Battles outside a region belong to sessions that no battle of
-- the range can reach.
-- NOTE: this relies on the stored sessions outside the range being current, so after a load with --no-marts run a full rebuild (`tzr-ingest marts`).

-- The refreshed time span: from midnight UTC of the first day to the latest
-- end among the range's battles (at least the midnight after the last day),
-- because a battle that starts in the range may end after it.
DROP TABLE IF EXISTS pg_temp.session_refresh_span;
CREATE TEMP TABLE session_refresh_span ON COMMIT DROP AS
WITH bounds AS (
    SELECT
        coalesce(%(day_from)s::date, '-infinity')::timestamp AT TIME ZONE 'UTC' AS range_start,
        (coalesce(%(day_to)s::date, 'infinity') + 1)::timestamp AT TIME ZONE 'UTC' AS range_stop
)
SELECT
    bounds.range_start,
    greatest(
        bounds.range_stop,
        (SELECT max(pb.ended_at)
         FROM player_battles pb
         WHERE pb.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity'))
    ) AS reach
FROM bounds;

-- Per affected player, the span whose battles are put into sessions again.
DROP TABLE IF EXISTS pg_temp.session_regions;
CREATE TEMP TABLE session_regions ON COMMIT DROP AS
WITH touched AS (
    -- Stored sessions that a battle of the range could join: they overlap
    -- the refreshed span widened by the max idle on both sides.
    SELECT s.login, s.started_at, s.ended_at
    FROM mart_player_sessions s
    WHERE tstzrange(s.started_at, s.ended_at, '[]') && (
        SELECT tstzrange(range_start - mart_session_max_idle(), reach + mart_session_max_idle(), '[]')
        FROM session_refresh_span
    )
),
range_players AS (
    SELECT DISTINCT pb.login
    FROM player_battles pb
    WHERE pb.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
),
players AS (
    SELECT login, started_at, ended_at FROM touched
    UNION ALL
    SELECT login, NULL, NULL FROM range_players
)
SELECT
    players.login,
    -- least() and greatest() skip the NULLs of players without a touched session.
    least(r.range_start, min(players.started_at)) AS region_start,
    greatest(r.reach, max(players.ended_at)) AS region_end
FROM players, session_refresh_span r
GROUP BY players.login, r.range_start, r.reach;

-- Temporary tables get no statistics from autovacuum, and the planner's
-- default guess of thousands of rows makes it pick slow plans (and JIT).
ANALYZE session_regions;

-- Every stored session that starts in a region is one of the touched ones.
DELETE FROM mart_player_sessions s
USING session_regions g
WHERE s.login = g.login
  AND s.started_at BETWEEN g.region_start AND g.region_end;

INSERT INTO mart_player_sessions (
    login, started_at, ended_at, day, battles, playtime_seconds, idle_seconds, overlapping_battles
)
WITH region_battles AS (
    SELECT pb.login, pb.battle, pb.started_at, pb.ended_at
    FROM player_battles pb
    JOIN session_regions g
        ON g.login = pb.login AND pb.started_at BETWEEN g.region_start AND g.region_end
    -- pb.day is the UTC day of pb.started_at, so this bound selects no
    -- fewer battles and lets the planner read them by day.
    WHERE pb.day BETWEEN (SELECT (min(region_start) AT TIME ZONE 'UTC')::date FROM session_regions)
                     AND (SELECT (max(region_end) AT TIME ZONE 'UTC')::date FROM session_regions)
),
idles AS (
    SELECT
        login, battle, started_at, ended_at,
        -- Idle before this battle: its start minus the latest end among the
        -- player's earlier battles, so a short battle inside a long one does
        -- not fake a gap. Negative when the battle started before an earlier
        -- one ended. NULL for the player's first battle in the region.
        started_at - max(ended_at) OVER (
            PARTITION BY login ORDER BY started_at, battle
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS idle
    FROM region_battles
),
marked AS (
    SELECT
        *,
        -- The region starts at a session start, so its first battle opens one.
        idle IS NULL OR idle > mart_session_max_idle() AS opens_session
    FROM idles
),
numbered AS (
    SELECT
        *,
        -- Sessions opened so far: the same number for every battle of a session.
        count(*) FILTER (WHERE opens_session) OVER (
            PARTITION BY login ORDER BY started_at, battle
        ) AS session_number
    FROM marked
)
SELECT
    login,
    min(started_at) AS started_at,
    max(ended_at) AS ended_at,
    (min(started_at) AT TIME ZONE 'UTC')::date AS day,
    count(*) AS battles,
    -- Seconds from the first start to the latest end.
    extract(epoch FROM max(ended_at) - min(started_at))::integer AS playtime_seconds,
    -- Seconds between battles inside the session. An overlap adds 0.
    coalesce(
        sum(extract(epoch FROM greatest(idle, interval '0'))) FILTER (WHERE NOT opens_session),
        0
    )::integer AS idle_seconds,
    -- Battles that started before an earlier battle of the player ended:
    -- two logs claim the player at once, a data defect.
    count(*) FILTER (WHERE NOT opens_session AND idle < interval '0') AS overlapping_battles
FROM numbered
GROUP BY login, session_number;
