-- A destination that batches gets one delivery per batch of events routed together: the row's
-- event is the batch's first, `members` lists the seqs of all of them (a JSON array) and `events`
-- counts them. A batch whose events end differently is split into one row per event.
ALTER TABLE deliveries ADD COLUMN members TEXT;
ALTER TABLE deliveries ADD COLUMN events BIGINT NOT NULL DEFAULT 1;
-- How many events an attempt's request carried: an event of a batch row finds the row's requests
-- of several events; its requests of one event are logged under its own messageId.
ALTER TABLE attempts ADD COLUMN events BIGINT NOT NULL DEFAULT 1;
