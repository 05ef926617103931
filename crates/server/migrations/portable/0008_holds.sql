-- Legal holds (docs/design/0009-retention-and-prune.md §7): while a hold on a user (device
-- NULL) or on one of their devices is in place (lifted_unix NULL), none of the snapshots it
-- covers is forgotten, whatever the policy says. Rows are never deleted: a lifted hold stays,
-- with who lifted it and when, beside the audit log's entries.
CREATE TABLE holds (
    tenant       TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    device       TEXT,
    reason       TEXT NOT NULL,
    placed_by    TEXT NOT NULL,
    placed_unix  BIGINT NOT NULL,
    lifted_by    TEXT,
    lifted_unix  BIGINT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX holds_by_user ON holds (tenant, user_id);
