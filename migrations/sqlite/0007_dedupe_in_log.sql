-- SQLite: deduplication looks messages up in the event log itself, and retention deletes by seq.
-- Each event then touches three B-trees instead of six (the table, events_source_seq and
-- events_message), which cuts the pages every group commit writes to the WAL by about a quarter.
-- One writer commits at a time here, so a lookup followed by an insert cannot race.
CREATE INDEX events_message ON events (source_id, message_id, received_at);
DROP INDEX events_received_at;
DROP TABLE event_dedupe;
