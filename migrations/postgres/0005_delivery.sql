-- Delivery engine: one row per (event, destination) with its state; every attempt; the router's
-- position in the event log; replays of dead letters.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    event_seq BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    -- The user's lane (userId, else anonymousId) when the integration needs order.
    order_key TEXT,
    -- pending | in_flight | succeeded | retrying | dead | filtered | rejected
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    reason TEXT
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_destination ON deliveries (destination_id, state, event_seq);
CREATE INDEX deliveries_lane ON deliveries (destination_id, order_key, event_seq);
CREATE INDEX deliveries_message ON deliveries (message_id);

CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status BIGINT,
    request TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX attempts_destination ON attempts (destination_id, at);
CREATE INDEX attempts_message ON attempts (message_id);

CREATE TABLE router_state (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
-- Events stored before the engine existed are not routed.
INSERT INTO router_state (name, position) SELECT 'events', COALESCE(MAX(seq), 0) FROM events;

CREATE TABLE replays (
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    filter TEXT NOT NULL
);

ALTER TABLE destinations ADD COLUMN paused_until BIGINT;
-- Retry options of this destination: {"schedule": [seconds…], "max_attempts": n, "max_age_secs": n}.
ALTER TABLE destinations ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}';
-- The circuit breaker: failures in a row, and why the destination was paused automatically.
ALTER TABLE destinations ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN circuit_reason TEXT;
-- "Only when traits changed": the traits last routed per destination and user (a hash).
CREATE TABLE destination_traits (
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    user_key TEXT NOT NULL,
    traits_hash TEXT NOT NULL,
    PRIMARY KEY (destination_id, user_key)
);
CREATE INDEX destination_traits_user ON destination_traits (user_key);
