-- A replayed delivery remembers its replay, so the replay's outcome can be told: how many of its
-- deliveries were delivered, failed again or are still on their way. Only replayed deliveries
-- have an entry in the index.
ALTER TABLE deliveries ADD COLUMN replay_id TEXT;
CREATE INDEX deliveries_replay ON deliveries (replay_id) WHERE replay_id IS NOT NULL;
-- The response's headers of an attempt (a JSON object), beside its status and body.
ALTER TABLE attempts ADD COLUMN response_headers TEXT;
