-- Event ids are handed out in ranges by one counter row, so that a batch's events are one
-- contiguous id range on every engine: the ingest transaction moves the counter (which locks its
-- row until commit on PostgreSQL; SQLite has one writer anyway) and inserts the events with
-- explicit ids. Batches therefore take their ranges in commit order.
CREATE TABLE event_ids (
    singleton  BIGINT PRIMARY KEY NOT NULL CHECK (singleton = 0),
    next_id    BIGINT NOT NULL
);
INSERT INTO event_ids (singleton, next_id) SELECT 0, COALESCE(MAX(id), 0) + 1 FROM events;

-- Which server instance may append to an archive (docs/design/0004-scale-out.md). `epoch`
-- moves each time another holder takes the lease: an instance that held the lease at `epoch`
-- and finds it still at `epoch` knows nobody else appended meanwhile. `expires_unix_ms` lets
-- another instance take a lease whose holder died.
CREATE TABLE archive_leases (
    tenant           TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    holder           TEXT NOT NULL,
    epoch            BIGINT NOT NULL,
    expires_unix_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
