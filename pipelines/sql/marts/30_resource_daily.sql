-- mart_resource_daily: items that players picked up, by the day of the
-- battle (never the day the log was loaded), item and map location.

DELETE FROM mart_resource_daily
WHERE day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity');

INSERT INTO mart_resource_daily (day, name, category, x, y, qty, pickups, battles, players)
SELECT
    b.day,
    l.name,
    l.category,
    b.x,
    b.y,
    sum(l.qty) AS qty,
    count(*) AS pickups,
    count(DISTINCT l.battle) AS battles,
    count(DISTINCT p.login) AS players
FROM battles b
JOIN loot l ON l.battle = b.id
JOIN participants p ON p.battle = l.battle AND p.pid = l.pid
WHERE b.day BETWEEN coalesce(%(day_from)s::date, '-infinity') AND coalesce(%(day_to)s::date, 'infinity')
  -- on_map = false: the picked-up id is not among the battle's map objects,
  -- so the pickup cannot be tied to an item that entered the game here.
  AND l.on_map IS NOT FALSE
  -- A monster's pickup never reaches a player's inventory.
  AND NOT p.is_monster
GROUP BY b.day, l.name, l.category, b.x, b.y;
