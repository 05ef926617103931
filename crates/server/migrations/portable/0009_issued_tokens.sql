-- Tokens as issued (docs/design/0009-retention-and-prune.md §9): the id, whose, what for and
-- until when, never the token itself; so that an admin can list the tokens that can still be
-- used and revoke one by id. Rows expired a week are deleted as new ones are recorded.
CREATE TABLE issued_tokens (
    tenant         TEXT NOT NULL REFERENCES tenants (id),
    token_id       TEXT NOT NULL,
    subject        TEXT NOT NULL,
    device         TEXT,
    role           TEXT NOT NULL,
    capabilities   TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    issued_unix    BIGINT NOT NULL,
    expires_unix   BIGINT NOT NULL,
    PRIMARY KEY (tenant, token_id)
);
CREATE INDEX issued_tokens_by_expiry ON issued_tokens (tenant, expires_unix);
