-- See the SQLite migration: one delivery per batch of events routed together.
ALTER TABLE deliveries ADD COLUMN members TEXT;
ALTER TABLE deliveries ADD COLUMN events BIGINT NOT NULL DEFAULT 1;
-- A batch member's attempts are found through its event: from a messageId to its seq, as on SQLite.
CREATE INDEX events_message ON events (source_id, message_id);
-- How many events an attempt's request carried: an event of a batch row finds the row's requests
-- of several events; its requests of one event are logged under its own messageId.
ALTER TABLE attempts ADD COLUMN events BIGINT NOT NULL DEFAULT 1;
