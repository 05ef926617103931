-- What the server acknowledged of each archive (docs/format/archive.md, "Acknowledged
-- history"): after every commit an answer acknowledges, the number of data records and the
-- chain head then (64 hex digits). An archive that opens with fewer data records, or with as
-- many and another chain head, lost acknowledged data: the server marks it damaged (when, how
-- many records, why), logs an error, counts it in its metrics and audits it, instead of
-- serving what recovery left as if nothing had happened. `lost_records` adds up over every
-- such opening; `damaged_unix` stays set until an operator clears it.
ALTER TABLE archives ADD COLUMN acked_records BIGINT NOT NULL DEFAULT 0;
ALTER TABLE archives ADD COLUMN acked_chain TEXT;
ALTER TABLE archives ADD COLUMN lost_records BIGINT NOT NULL DEFAULT 0;
ALTER TABLE archives ADD COLUMN damaged_unix BIGINT;
ALTER TABLE archives ADD COLUMN damage TEXT;
