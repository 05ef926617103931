-- The operator's settings, for every tenant (docs/design/0009-retention-and-prune.md §5.2):
-- `retention_floor`, the least any retention policy keeps (JSON, crates/server/src/retention.rs).
-- Set from the server's command line only; absent means the built-in default.
CREATE TABLE operator_settings (
    name          TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    changed_unix  BIGINT NOT NULL
);
