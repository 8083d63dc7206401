-- Privacy: users whose further events are dropped at ingest.
CREATE TABLE suppressions (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    anonymous_id TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
