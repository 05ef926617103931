-- Events are found through their batches. A batch's events are inserted in one transaction by
-- the single SQLite writer, so their row ids are one contiguous range, [first_event,
-- last_event]; the batch row records it with the batch's user. Searches walk a tenant's batches
-- (optionally one device's or one user's) in row-id order through these small indexes, then
-- read each batch's events by row-id range: no per-event index is needed, and every page is an
-- index range scan with no sort.
--
-- The 0001 indexes (tenant, observed time, id) and the like could not serve the search's
-- arrival order: every search sorted all of the tenant's events, and the three of them cost
-- ingest about a third of its throughput (benches/server.rs: 128k events/s without them,
-- 75-85k with them, in one session's runs).
ALTER TABLE event_batches ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE event_batches ADD COLUMN first_event BIGINT NOT NULL DEFAULT 0;
ALTER TABLE event_batches ADD COLUMN last_event BIGINT NOT NULL DEFAULT 0;
UPDATE event_batches
   SET user_id = s.user_id, first_event = s.first_event, last_event = s.last_event
  FROM (SELECT tenant, device, batch_sequence, MIN(user_id) AS user_id,
               MIN(id) AS first_event, MAX(id) AS last_event
          FROM events GROUP BY tenant, device, batch_sequence) AS s
 WHERE s.tenant = event_batches.tenant AND s.device = event_batches.device
   AND s.batch_sequence = event_batches.sequence;
DROP INDEX events_by_time;
DROP INDEX events_by_device;
DROP INDEX events_by_user;
CREATE INDEX batches_by_tenant ON event_batches (tenant, last_event);
CREATE INDEX batches_by_device ON event_batches (tenant, device, last_event);
CREATE INDEX batches_by_user ON event_batches (tenant, user_id, last_event);
