-- Cairn server metadata, schema 1 (SQLite). Portable SQL where it costs nothing, so that the
-- PostgreSQL migrations of the scale-out work differ only where the engines do.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY NOT NULL,
    quota_bytes   BIGINT NOT NULL,
    used_bytes    BIGINT NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    created_unix  BIGINT NOT NULL
);

CREATE TABLE users (
    tenant        TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_unix  BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- state: 'pending' (enrollment token issued), 'active', 'deauthorized' (final).
-- secret_hash: BLAKE3 of the device secret that refreshes its access tokens (set at enrollment).
CREATE TABLE devices (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL,
    enrollment_jti  TEXT,
    secret_hash     BLOB,
    created_unix    BIGINT NOT NULL,
    changed_unix    BIGINT NOT NULL,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, id)
);

CREATE TABLE revoked_tokens (
    tenant        TEXT NOT NULL,
    token_id      TEXT NOT NULL,
    revoked_unix  BIGINT NOT NULL,
    PRIMARY KEY (tenant, token_id)
);

-- One archive per user; archive_id is the log's id (16 random bytes).
CREATE TABLE archives (
    tenant        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    archive_id    BLOB NOT NULL,
    stored_bytes  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, user_id),
    FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, id)
);

-- Idempotency of event ingest: one row per (device, batch sequence) accepted.
CREATE TABLE event_batches (
    tenant               TEXT NOT NULL,
    device               TEXT NOT NULL,
    sequence             BIGINT NOT NULL,
    events               BIGINT NOT NULL,
    received_unix_nanos  BIGINT NOT NULL,
    PRIMARY KEY (tenant, device, sequence)
);

-- Events: index columns in clear, the whole StoredEvent sealed with a server storage key.
CREATE TABLE events (
    id                INTEGER PRIMARY KEY,
    tenant            TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    device            TEXT NOT NULL,
    batch_sequence    BIGINT NOT NULL,
    batch_index       BIGINT NOT NULL,
    observed_nanos    BIGINT NOT NULL,
    activity          INTEGER NOT NULL,
    key_id            TEXT NOT NULL,
    sealed            BLOB NOT NULL
);
CREATE INDEX events_by_time ON events (tenant, observed_nanos, id);
CREATE INDEX events_by_device ON events (tenant, device, observed_nanos, id);
CREATE INDEX events_by_user ON events (tenant, user_id, observed_nanos, id);

-- The escrowed archive key of each user (at most one record; none in custom-key mode).
CREATE TABLE escrow (
    tenant        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    mode          INTEGER NOT NULL,
    envelope      BLOB,
    updated_unix  BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    tenant   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    at_unix  BIGINT NOT NULL
);
