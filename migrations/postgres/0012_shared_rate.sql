-- Rate limits shared by the nodes: per destination, the theoretical arrival time (GCRA) of its
-- next request, in microseconds since the epoch by the database's clock. Nodes reserve a few send
-- slots at a time by moving it forward.
CREATE TABLE destination_rate (
    destination_id TEXT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    tat BIGINT NOT NULL
);
