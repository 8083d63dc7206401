-- Retention deletes events by seq, up to the first one still inside the retention period, so the
-- received_at index is no longer needed. (Unlike SQLite, PostgreSQL keeps event_dedupe: several
-- nodes may store the same message at once, and its primary key settles which one does.)
DROP INDEX events_received_at;
