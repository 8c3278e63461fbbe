"""Battle-log collection over the game protocol, run by the ingest service.

Bot accounts log in to the game server and request battle logs by id
(``//blook <id>`` and GETMYBATTLE). Jobs walk id ranges forward (following
new battles), backward (history) or between two ids, record every id's
outcome in PostgreSQL, and write fetched logs into the ingest drop folder,
where the ingest pipeline loads them like any dropped file.
"""
