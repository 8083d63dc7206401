-- Tracking API: source options, the event log, deduplication, rejected messages.

ALTER TABLE sources ADD COLUMN type TEXT NOT NULL DEFAULT 'server';
ALTER TABLE sources ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sources ADD COLUMN rate_limit BIGINT;

-- The event log: append-only; `seq` orders it (routing follows it by seq).
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    received_at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_source_seq ON events (source_id, seq);
CREATE INDEX events_received_at ON events (received_at);

-- (source, messageId) seen within the deduplication window.
CREATE TABLE event_dedupe (
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
CREATE INDEX event_dedupe_received_at ON event_dedupe (received_at);

CREATE TABLE rejections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    message_id TEXT,
    type TEXT,
    reason TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX rejections_source_seq ON rejections (source_id, seq);
