-- The game's own tables in the tzserver database, as far as TZR Host uses
-- them, for test mode and tests only: on a real server the game owns and
-- creates them. Every statement is safe to run again.

CREATE TABLE IF NOT EXISTS constants (
    my_row_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    Name VARCHAR(50) NOT NULL,
    Value DECIMAL(7, 2) NULL,
    Description VARCHAR(255) NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    UNIQUE KEY uq_constants_name (Name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

INSERT INTO constants (Name, Value, Description) VALUES
    ('ServerStatus', 1.00, '1: the server is open to everyone'),
    ('RateExp', 1.00, 'experience rate'),
    ('RatePvp', 1.00, 'PvP rate'),
    ('RatePve', 1.00, 'PvE rate'),
    ('RateColorMob', 1.00, 'coloured monster rate'),
    ('RateSkill', 1.00, 'skill rate'),
    ('CLIENT_STATUS', 256.00, 'current client version'),
    ('AdminNote', 0.00, 'an internal constant that is never published')
ON DUPLICATE KEY UPDATE Name = Name;

-- Links between Telegram users and game logins.
CREATE TABLE IF NOT EXISTS tgplayers (
    telegram_id BIGINT NOT NULL,
    username VARCHAR(64) NULL,
    login VARCHAR(64) NOT NULL,
    KEY ix_tgplayers_telegram (telegram_id),
    KEY ix_tgplayers_login (login)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Game accounts; the game server writes a row when it accepts ADDUSER.
-- password holds the 40-hex password transform that ADDUSER and NEWPAS
-- carry; the simulator keeps it there so that its accounts survive a
-- restart. The real game's name for that column is not known.
CREATE TABLE IF NOT EXISTS users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    login VARCHAR(64) NOT NULL,
    password CHAR(40) CHARACTER SET ascii COLLATE ascii_bin NULL,
    gender TINYINT UNSIGNED NULL,
    email VARCHAR(255) NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_users_login (login)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Test databases made before the password column existed get it here.
ALTER TABLE users ADD COLUMN IF NOT EXISTS password CHAR(40) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER login;
