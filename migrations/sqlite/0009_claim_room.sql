-- PostgreSQL only (page fill factor for claims, lz4 for attempt logs); nothing to do on SQLite.
SELECT 1;
