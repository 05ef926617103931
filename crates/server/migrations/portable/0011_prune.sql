-- Prune (docs/design/0009-retention-and-prune.md §5.4, §6): a snapshot the policy forgot keeps
-- its row, with when it was forgotten; a block no kept snapshot reaches is marked, and is
-- elided only once its mark is older than the grace period and it is still unreferenced.
ALTER TABLE snapshots ADD COLUMN forgotten_unix BIGINT;
-- The order snapshots arrived in, per archive (1, 2, …): one second can hold several backups,
-- and the policy's "newest" must not then depend on the ids. NULL for rows made before it.
ALTER TABLE snapshots ADD COLUMN received_seq BIGINT;

CREATE TABLE prune_marks (
    tenant       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    id           TEXT NOT NULL,
    marked_unix  BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id, id)
);
