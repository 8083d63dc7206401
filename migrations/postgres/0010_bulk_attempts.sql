-- Same column as on SQLite, where successful batch members point to their request's attempt.
-- PostgreSQL still writes a row per event (it has no index from a messageId to its events).
ALTER TABLE deliveries ADD COLUMN attempt_id TEXT;
