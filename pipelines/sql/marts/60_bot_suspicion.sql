-- mart_bot_suspicion: signs of automated play per player and day, for
-- players with at least 5 battles that day.
--
-- Idle times are measured from the end of a player's battle to the start of
-- the player's next battle. Gaps between two end times are never used,
-- because they include the length of the next battle. A battle lasts
-- minutes, so two end times a second apart come from duplicated or
-- misattributed logs, not from fast play.
--
-- Runs after 50_player_sessions.sql, whose sessions it reads.

-- Days to rebuild. The range, and the day after it, because that day's
-- first idles are measured from the range's last battles. Also every day
-- that a session near the range overlaps, because 50_player_sessions.sql
-- may have changed the length of those sessions. "Near" means within the
-- max idle of the range widened by one day. That covers every changed
-- session, because player_battles bounds a battle's length to 6 hours.
DROP TABLE IF EXISTS pg_temp.bot_refresh_days;
CREATE TEMP TABLE bot_refresh_days ON COMMIT DROP AS
WITH bounds AS (
    SELECT
        coalesce(%(day_from)s::date, '-infinity') AS range_from,
        coalesce(%(day_to)s::date, 'infinity') AS range_to
)
SELECT
    least(bounds.range_from, min((s.started_at AT TIME ZONE 'UTC')::date)) AS day_from,
    greatest(bounds.range_to + 1, max((s.ended_at AT TIME ZONE 'UTC')::date)) AS day_to
FROM bounds
LEFT JOIN mart_player_sessions s
    ON tstzrange(s.started_at, s.ended_at, '[]') && tstzrange(
        bounds.range_from::timestamp AT TIME ZONE 'UTC' - mart_session_max_idle(),
        (bounds.range_to + 2)::timestamp AT TIME ZONE 'UTC' + mart_session_max_idle(),
        '[]'
    )
GROUP BY bounds.range_from, bounds.range_to;

DELETE FROM mart_bot_suspicion
WHERE day BETWEEN (SELECT day_from FROM bot_refresh_days) AND (SELECT day_to FROM bot_refresh_days);

INSERT INTO mart_bot_suspicion (
    day, login, battles, active_hours, idles, idle_median_seconds, idle_cv,
    short_idle_share, longest_session_hours, survival_rate, kills_per_battle,
    score, reasons
)
WITH timeline AS (
    -- The refreshed days' battles, and the day before them, whose last
    -- battles precede the first battles of the first refreshed day.
    SELECT pb.*
    FROM player_battles pb
    WHERE pb.day BETWEEN (SELECT day_from - 1 FROM bot_refresh_days) AND (SELECT day_to FROM bot_refresh_days)
),
idles AS (
    SELECT
        t.*,
        -- Seconds from the latest end among the player's earlier battles to
        -- this battle's start. It is negative for an overlap and NULL for the
        -- first battle. It stays numeric, so that the mean and deviation
        -- below do not depend on the order in which rows are summed.
        extract(epoch FROM t.started_at - max(t.ended_at) OVER (
            PARTITION BY t.login ORDER BY t.started_at, t.battle
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        )) AS idle_seconds
    FROM timeline t
),
session_idles AS (
    SELECT
        i.*,
        -- In-session idles only: from 0 up to the session max idle (30 min).
        -- An overlap (negative) is a data defect, and a longer pause is a
        -- break, not part of the playing rhythm.
        CASE
            WHEN i.idle_seconds BETWEEN 0 AND extract(epoch FROM mart_session_max_idle())
            THEN i.idle_seconds
        END AS session_idle_seconds
    FROM idles i
),
player_days AS (
    SELECT
        i.day,
        i.login,
        count(*) AS battles,
        count(DISTINCT extract(hour FROM i.started_at AT TIME ZONE 'UTC')) AS active_hours,
        count(i.session_idle_seconds) AS idles,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY i.session_idle_seconds::float8) AS idle_median_seconds,
        -- Coefficient of variation (sample standard deviation / mean) of the
        -- idles: near 0 when every pause is the same length. Idles that are
        -- all 0 s are perfectly regular, so their CV is 0. It needs 2 idles.
        CASE
            WHEN count(i.session_idle_seconds) < 2 THEN NULL
            WHEN avg(i.session_idle_seconds) = 0 THEN 0
            ELSE (stddev_samp(i.session_idle_seconds) / avg(i.session_idle_seconds))::float8
        END AS idle_cv,
        -- Share of idles under 10 s: a human needs longer to loot, heal and
        -- walk to the next fight.
        count(*) FILTER (WHERE i.session_idle_seconds < 10)::float8
            / nullif(count(i.session_idle_seconds), 0) AS short_idle_share,
        count(*) FILTER (WHERE i.survived)::float8 / count(*) AS survival_rate,
        sum(i.kills_monsters + i.kills_players)::float8 / count(*) AS kills_per_battle
    FROM session_idles i
    WHERE i.day BETWEEN (SELECT day_from FROM bot_refresh_days) AND (SELECT day_to FROM bot_refresh_days)
    GROUP BY i.day, i.login
    -- Fewer battles are too few to show a player's rhythm.
    HAVING count(*) >= 5
),
longest_sessions AS (
    SELECT
        d.day,
        d.login,
        -- Hours of the longest session that overlaps the day, counted whole
        -- even where it runs into the days around.
        max(s.playtime_seconds) / 3600.0 AS longest_session_hours
    FROM player_days d
    JOIN mart_player_sessions s
        ON s.login = d.login
       AND s.ended_at >= d.day::timestamp AT TIME ZONE 'UTC'
       AND s.started_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY d.day, d.login
),
components AS (
    -- Each component is clipped to [0, 1].
    SELECT
        d.*,
        coalesce(l.longest_session_hours, 0) AS longest_session_hours,
        -- volume: battles a day, 0 at 50, 1 at 200.
        least(greatest((d.battles - 50) / 150.0, 0), 1) AS volume,
        -- regularity: 1 when the idle CV is 0.1 or less, 0 at 0.6 or more.
        -- Fewer than 10 idles give no stable CV, so they score 0.
        CASE WHEN d.idles >= 10
            THEN least(greatest((0.6 - d.idle_cv) / 0.5, 0), 1)
            ELSE 0
        END AS regularity,
        -- short_idles: 1 when half or more of the idles are under 10 s.
        -- Fewer than 10 idles score 0, for the same reason.
        CASE WHEN d.idles >= 10
            THEN least(d.short_idle_share / 0.5, 1)
            ELSE 0
        END AS short_idles,
        -- round_the_clock: distinct UTC hours with a battle start, 0 at 16,
        -- 1 at 22, because people sleep.
        least(greatest((d.active_hours - 16) / 6.0, 0), 1) AS round_the_clock,
        -- marathon: the maximum session length, 0 at 6 h, 1 at 12 h.
        least(greatest((coalesce(l.longest_session_hours, 0) - 6) / 6.0, 0), 1) AS marathon,
        -- flawless_farming: 1 for a survival rate of 0.98 or more over 100
        -- or more battles, because a human takes risks and loses some fights.
        CASE WHEN d.survival_rate >= 0.98 AND d.battles >= 100 THEN 1 ELSE 0 END AS flawless_farming
    FROM player_days d
    LEFT JOIN longest_sessions l USING (day, login)
)
SELECT
    day, login, battles, active_hours, idles, idle_median_seconds, idle_cv,
    short_idle_share, longest_session_hours, survival_rate, kills_per_battle,
    -- Weighted sum of the components, with weights adding up to 1, rounded
    -- to 3 decimals. The idle signals weigh most, because a person cannot
    -- keep a machine's rhythm for long. Volume and round-the-clock play also
    -- fit a dedicated human, and marathon and flawless farming only add
    -- evidence.
    round((
        0.25 * regularity
        + 0.25 * short_idles
        + 0.15 * volume
        + 0.15 * round_the_clock
        + 0.10 * marathon
        + 0.10 * flawless_farming
    )::numeric, 3)::float8 AS score,
    -- The components that scored 0.7 or more, strongest weight first.
    array_remove(ARRAY[
        CASE WHEN regularity >= 0.7 THEN 'regularity' END,
        CASE WHEN short_idles >= 0.7 THEN 'short_idles' END,
        CASE WHEN volume >= 0.7 THEN 'volume' END,
        CASE WHEN round_the_clock >= 0.7 THEN 'round_the_clock' END,
        CASE WHEN marathon >= 0.7 THEN 'marathon' END,
        CASE WHEN flawless_farming >= 0.7 THEN 'flawless_farming' END
    ], NULL) AS reasons
FROM components;
