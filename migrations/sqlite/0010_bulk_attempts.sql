-- A batch request that succeeds is logged once, with its first event; the other events' deliveries
-- point to that attempt instead of each getting a row of their own (see README, Delivery).
ALTER TABLE deliveries ADD COLUMN attempt_id TEXT;
