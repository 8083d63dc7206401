-- Destinations get their integration's configuration: secrets (sealed), action overrides,
-- filters, and a status (ok | misconfigured) with the reason.
ALTER TABLE destinations ADD COLUMN secrets TEXT NOT NULL DEFAULT '';
ALTER TABLE destinations ADD COLUMN actions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE destinations ADD COLUMN filters TEXT NOT NULL DEFAULT '{}';
ALTER TABLE destinations ADD COLUMN status TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE destinations ADD COLUMN status_reason TEXT;
