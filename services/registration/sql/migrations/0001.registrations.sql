-- transactional: false
-- What registration adds to the game's tzserver database to be safe under
-- concurrency and retries. It needs the game's tgplayers table, with each
-- login linked once; tzr-gamedb migrate checks both before it starts.
-- MariaDB commits each CREATE at once, so a transaction cannot undo a
-- half-applied run: every statement is safe to run again instead.

-- One row per registration request, keyed by the caller's request id, so a
-- repeated request returns the stored outcome instead of creating a second
-- account. login_hold equals login while the registration is pending or
-- active and is NULL once it failed: its unique index makes the database,
-- not a check before the insert, refuse a second registration of a login.
-- Comparisons use utf8mb4_unicode_ci: case-insensitive, and e with ё alike.
CREATE TABLE IF NOT EXISTS tzr_registrations (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    request_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    telegram_id BIGINT UNSIGNED NOT NULL,
    username VARCHAR(64) NULL,
    login VARCHAR(16) NOT NULL,
    login_hold VARCHAR(16) NULL,
    gender TINYINT UNSIGNED NOT NULL,
    state ENUM('pending', 'active', 'failed') NOT NULL DEFAULT 'pending',
    error_code VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    error_detail VARCHAR(255) NULL,
    game_account_id VARCHAR(64) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_tzr_registrations_request (request_id),
    UNIQUE KEY uq_tzr_registrations_login_hold (login_hold),
    KEY ix_tzr_registrations_telegram (telegram_id, state),
    KEY ix_tzr_registrations_pending (state, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- A row per Telegram user that registration locks (SELECT ... FOR UPDATE)
-- while it counts that user's accounts, so concurrent requests cannot pass
-- the per-user limit together.
CREATE TABLE IF NOT EXISTS tzr_telegram_quota (
    telegram_id BIGINT UNSIGNED NOT NULL PRIMARY KEY
) ENGINE = InnoDB;

-- The game's link table gets a unique login, so no two Telegram users can
-- ever be linked to one login, whatever writes the table.
CREATE UNIQUE INDEX IF NOT EXISTS uq_tgplayers_login ON tgplayers (login);
