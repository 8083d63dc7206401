-- A claim now only sets the lease: a delivery stays pending or retrying while in flight, and a
-- claim takes those whose lease has ended. Deliveries left in flight by the previous version go
-- back to retrying (their lease still holds them until it ends). The lease index goes: a claim
-- then changes no indexed column and writes no index.
UPDATE deliveries SET state = 'retrying' WHERE state = 'in_flight';
DROP INDEX deliveries_leased;
-- Claims take from one destination at a time: the due index starts with the destination, so a
-- paused destination's backlog is not walked by every claim.
DROP INDEX deliveries_ready;
CREATE INDEX deliveries_ready ON deliveries (destination_id, next_attempt_at, event_seq) WHERE state IN ('pending', 'retrying');
