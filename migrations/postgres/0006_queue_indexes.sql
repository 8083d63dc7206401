-- The claim walks the due deliveries in order, and the sweeper the leased ones: partial indexes,
-- so finished deliveries (nearly all rows) leave them and cost no index writes there; the lane
-- index holds only ordered deliveries.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_ready ON deliveries (next_attempt_at, event_seq) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'in_flight';
DROP INDEX deliveries_lane;
CREATE INDEX deliveries_lane ON deliveries (destination_id, order_key, event_seq) WHERE order_key IS NOT NULL;
