-- depends: 0005.shop

-- Clan members' participations by clan, covering what the clan queries
-- read (battle, unit, side), so that a clan's battles come from this index
-- and the clan-war query scans it alone instead of fetching every player
-- row of the PvP battles from the table.
CREATE INDEX participants_clan_member_idx ON participants (clan, battle) INCLUDE (pid, side)
    WHERE clan IS NOT NULL AND NOT is_monster;
