-- The token signing key set (docs/design/0009-retention-and-prune.md §9, SECURITY-TESTS T-4):
-- every instance verifies with every row and signs with the one switched to last, reloading
-- the set every few seconds. The seed is sealed by the storage key ring (`sealed_by` names the
-- ring's key), bound to the key id. A key leaves the set only once the last token it signed has
-- expired: its row stays, with `removed_unix` and its seed erased, so that the data directory's
-- key file cannot bring it back.
CREATE TABLE signing_keys (
    id               TEXT PRIMARY KEY,
    public_hex       TEXT NOT NULL,
    sealed_by        TEXT NOT NULL,
    seed_sealed      TEXT NOT NULL,
    published_unix   BIGINT NOT NULL,
    signs_from_unix  BIGINT,
    retired_unix     BIGINT,
    removed_unix     BIGINT
);
