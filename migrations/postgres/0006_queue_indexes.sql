-- Fewer index writes per delivery: the claim walks the due deliveries in order and the sweeper
-- the leased ones through partial indexes, which finished deliveries (nearly all rows) leave;
-- the per-destination index no longer holds the state, so state changes do not move its
-- entries (dead letters, listed and replayed by state, have their own); the lane index holds
-- only ordered deliveries; deliveries are not looked up by messageId.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_ready ON deliveries (next_attempt_at, event_seq) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'in_flight';
DROP INDEX deliveries_destination;
CREATE INDEX deliveries_destination ON deliveries (destination_id, event_seq);
CREATE INDEX deliveries_dead ON deliveries (destination_id, event_seq) WHERE state = 'dead';
DROP INDEX deliveries_lane;
CREATE INDEX deliveries_lane ON deliveries (destination_id, order_key, event_seq) WHERE order_key IS NOT NULL;
DROP INDEX deliveries_message;
