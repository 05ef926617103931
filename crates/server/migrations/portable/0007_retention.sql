-- Retention policies (docs/design/0009-retention-and-prune.md §5): the tenant's (user_id '')
-- and per-user overrides, as JSON (crates/server/src/retention.rs). A change that shortens
-- retention waits: `pending` takes effect at `pending_from_unix`. Prune, which applies them,
-- is not built yet.
CREATE TABLE retention_policies (
    tenant             TEXT NOT NULL REFERENCES tenants (id),
    user_id            TEXT NOT NULL,
    policy             TEXT NOT NULL,
    pending            TEXT,
    pending_from_unix  BIGINT,
    changed_unix       BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
