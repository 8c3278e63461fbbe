-- depends: 0004.analytics

-- The shop tracker (services/shop): point-in-time snapshots of the in-game
-- shops, read page by page by one bot per shop, with each item's price,
-- quantity, durability and seller as seen at that moment, and the changes
-- between consecutive snapshots.

-- Shops come from the service config (SHOP.shops) and are upserted at start.
CREATE TABLE shop_shops (
    id smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9_-]{1,32}$'),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An item template: the game's template code and type code, within the
-- category the listing was requested in.
CREATE TABLE shop_templates (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category text NOT NULL,
    name text NOT NULL,             -- template code, e.g. x1-k2
    type text NOT NULL,             -- type code, e.g. 1.7
    title text,                     -- the display name (txt) seen last
    UNIQUE (category, name, type)
);
CREATE INDEX shop_templates_title_idx ON shop_templates (lower(title));

-- One run over a shop's categories. `complete`: every category was read to
-- its end; `partial`: some categories failed (shop_snapshot_categories says
-- which); `failed`: none could be read, or the run stopped.
CREATE TABLE shop_snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shop_id smallint NOT NULL REFERENCES shop_shops (id),
    trigger text NOT NULL CHECK (trigger IN ('schedule', 'rpc')),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'partial', 'failed')),
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),   -- the running process touches it as it goes
    finished_at timestamptz,
    categories_total smallint NOT NULL,
    categories_done smallint NOT NULL DEFAULT 0,
    categories_failed smallint NOT NULL DEFAULT 0,
    current_category text,          -- while running
    pages integer NOT NULL DEFAULT 0,
    items integer NOT NULL DEFAULT 0,
    flagged integer NOT NULL DEFAULT 0,              -- items with at least one bad attribute
    previous_id bigint REFERENCES shop_snapshots (id) ON DELETE SET NULL,  -- what the stored changes compare with
    changes jsonb,                  -- change counts by kind, once finished
    error text,
    CONSTRAINT shop_snapshots_finished_check CHECK ((status = 'running') = (finished_at IS NULL))
);
-- One running snapshot per shop, whichever process started it.
CREATE UNIQUE INDEX shop_snapshots_one_running ON shop_snapshots (shop_id) WHERE status = 'running';
CREATE INDEX shop_snapshots_shop_idx ON shop_snapshots (shop_id, id DESC);

-- How each category went in a snapshot. Only categories that were read to
-- their end take part in diffs, so a failed category never reads as sold out.
CREATE TABLE shop_snapshot_categories (
    snapshot_id bigint NOT NULL REFERENCES shop_snapshots (id) ON DELETE CASCADE,
    category text NOT NULL,
    status text NOT NULL CHECK (status IN ('complete', 'failed')),
    pages integer NOT NULL DEFAULT 0,
    items integer NOT NULL DEFAULT 0,
    groups integer NOT NULL DEFAULT 0,
    group_shortfall integer NOT NULL DEFAULT 0,      -- offers that group headers announced but expansion did not find
    malformed integer NOT NULL DEFAULT 0,            -- entries without a usable id, not stored
    error text,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_id, category)
);
CREATE INDEX shop_snapshot_categories_fresh_idx ON shop_snapshot_categories (category, status, snapshot_id DESC);

-- The latest state seen of every item (a game-wide instance id) per shop,
-- with every attribute in a typed column. An attribute that cannot be read
-- is NULL here and named in bad_attributes; raw keeps every attribute.
CREATE TABLE shop_items (
    shop_id smallint NOT NULL REFERENCES shop_shops (id),
    item_id bigint NOT NULL,
    template_id integer REFERENCES shop_templates (id),
    category text NOT NULL,
    txt text NOT NULL DEFAULT '',
    price numeric(16, 2),
    quantity integer,               -- units on offer (a stack's count), 1 for a single item
    quality integer,                -- durability now
    max_quality integer,            -- durability when new
    owner text,                     -- the seller; NULL for NPC stock
    npc_stock boolean NOT NULL DEFAULT false,        -- unlimited state stock (the game's infinty="1")
    weight numeric(12, 3),
    damage jsonb,                   -- [{"type": "S", "min": 3, "max": 7}, ...]
    protection jsonb,
    caliber text,
    range integer,
    grouping integer,
    piercing numeric(14, 4),        -- percent (the game sends hundredths)
    magazine integer,               -- magazine capacity (max_count)
    reload_od integer,
    skill integer,
    attack_modes jsonb,             -- [{"mode": 2, "od": 4}, ...]
    slots text,
    equip_od integer,
    requirements jsonb,             -- level, strength, dexterity, accuracy, intuition, intelligence, endurance, gender
    bonuses jsonb,
    build_in text[],
    section integer,
    level integer,
    listed_at timestamptz,          -- put_day: when the seller listed it
    bad_attributes text[] NOT NULL DEFAULT '{}',
    raw jsonb NOT NULL,
    first_snapshot_id bigint,
    last_snapshot_id bigint,
    first_seen_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    gone_at timestamptz,            -- a later complete read of its category no longer listed it
    PRIMARY KEY (shop_id, item_id)
);
CREATE INDEX shop_items_template_idx ON shop_items (template_id);
CREATE INDEX shop_items_owner_idx ON shop_items (owner);

-- What one snapshot saw of each item.
CREATE TABLE shop_snapshot_items (
    snapshot_id bigint NOT NULL REFERENCES shop_snapshots (id) ON DELETE CASCADE,
    item_id bigint NOT NULL,
    category text NOT NULL,
    template_id integer REFERENCES shop_templates (id),
    price numeric(16, 2),
    quantity integer,
    quality integer,
    max_quality integer,
    owner text,
    npc_stock boolean NOT NULL DEFAULT false,
    PRIMARY KEY (snapshot_id, item_id)
);
CREATE INDEX shop_snapshot_items_category_idx ON shop_snapshot_items (snapshot_id, category);
CREATE INDEX shop_snapshot_items_template_idx ON shop_snapshot_items (template_id, snapshot_id);
CREATE INDEX shop_snapshot_items_item_idx ON shop_snapshot_items (item_id);

-- Changes between a snapshot and the previous finished one of its shop,
-- written when the snapshot finishes.
CREATE TABLE shop_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES shop_snapshots (id) ON DELETE CASCADE,
    previous_snapshot_id bigint NOT NULL,
    shop_id smallint NOT NULL REFERENCES shop_shops (id),
    item_id bigint NOT NULL,
    template_id integer REFERENCES shop_templates (id),
    category text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('added', 'removed', 'price_changed', 'quantity_changed', 'seller_changed',
                                       'durability_changed')),
    old_price numeric(16, 2),
    new_price numeric(16, 2),
    old_quantity integer,
    new_quantity integer,
    old_quality integer,
    new_quality integer,
    old_owner text,
    new_owner text,
    detected_at timestamptz NOT NULL
);
CREATE INDEX shop_changes_time_idx ON shop_changes (detected_at, id);
CREATE INDEX shop_changes_snapshot_idx ON shop_changes (snapshot_id);
CREATE INDEX shop_changes_item_idx ON shop_changes (shop_id, item_id);
