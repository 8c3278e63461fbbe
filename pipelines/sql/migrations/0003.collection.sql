-- depends: 0002.marts

-- Battle-log collection over the game protocol (services/ingest/collection):
-- the jobs that walk ranges of battle ids, and the latest outcome of every
-- battle id requested from the game server.

CREATE TABLE collect_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server text NOT NULL,           -- game server name, as in battles.server
    direction text NOT NULL CHECK (direction IN ('forward', 'backward', 'range')),
    trigger text NOT NULL CHECK (trigger IN ('rpc', 'schedule')),
    start_id bigint NOT NULL CHECK (start_id > 0),
    -- forward: the last id to follow up to, NULL to follow new battles until
    -- aborted; range: the last id; backward: the lowest id.
    end_id bigint CHECK (end_id > 0),
    requested_count bigint CHECK (requested_count > 0),   -- the request's count, if it gave one
    -- The next id to process: every id before it, in the job's direction,
    -- has an outcome. A forward job waiting for new battles keeps the first
    -- missing id here.
    cursor_id bigint NOT NULL,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'aborted', 'failed')),
    abort_requested boolean NOT NULL DEFAULT false,
    -- Battle ids by their latest outcome in this job; skipped ids already had
    -- an outcome (fetched, not found) from before the job and were not requested.
    fetched integer NOT NULL DEFAULT 0,
    not_found integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    mismatch integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    waiting_until timestamptz,      -- forward: at the newest battle, waiting to look again until then
    error text,                     -- why a job failed
    created_at timestamptz NOT NULL DEFAULT now(),
    resumed_at timestamptz,         -- when a service process last took the job up
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT collect_jobs_finished_check CHECK ((status = 'running') = (finished_at IS NULL))
);

-- One running job per direction and game server, whichever process started it.
CREATE UNIQUE INDEX collect_jobs_one_running ON collect_jobs (server, direction) WHERE status = 'running';
CREATE INDEX collect_jobs_created ON collect_jobs (created_at);

CREATE TABLE collect_battles (
    server text NOT NULL,
    battle_id bigint NOT NULL CHECK (battle_id > 0),
    -- fetched: the log was written to the drop folder; not_found: the game
    -- server replied that the battle does not exist; failed: see reason;
    -- mismatch: the reply held another battle's log, which was not saved.
    status text NOT NULL CHECK (status IN ('fetched', 'not_found', 'failed', 'mismatch')),
    -- failed: connect_failed, timeout, closed, half_frame, send_failed,
    -- protocol_error, refused (see code) or write_failed.
    reason text,
    code text,                      -- the game server's error code, for not_found and refused
    found_id bigint,                -- mismatch: the battle id in the reply, NULL when it named none
    size integer,                   -- fetched: bytes of the log as received
    sha256 text,                    -- fetched: SHA-256 of those bytes, hex
    attempts integer NOT NULL CHECK (attempts >= 0),   -- requests sent for the latest outcome
    detail text,                    -- failed and mismatch: the error message
    bot text,                       -- login of the bot account that sent the last request
    job_id bigint REFERENCES collect_jobs (id) ON DELETE SET NULL,
    first_requested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, battle_id),
    CONSTRAINT collect_battles_fetched_check CHECK (status <> 'fetched' OR (size IS NOT NULL AND sha256 IS NOT NULL)),
    CONSTRAINT collect_battles_failed_check CHECK (status <> 'failed' OR reason IS NOT NULL)
);

CREATE INDEX collect_battles_job ON collect_battles (job_id, updated_at);
CREATE INDEX collect_battles_status ON collect_battles (server, status, battle_id);
