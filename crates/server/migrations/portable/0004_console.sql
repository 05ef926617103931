-- What the admin console shows of devices and archives (issue #13): when a device was last seen
-- and with which agent version, when it last stored a snapshot; and each snapshot record's
-- arrival (the server cannot read a snapshot: it records only what it sees arrive).
ALTER TABLE devices ADD COLUMN last_seen_unix BIGINT;
ALTER TABLE devices ADD COLUMN agent_version TEXT;
ALTER TABLE devices ADD COLUMN last_backup_unix BIGINT;

CREATE TABLE snapshots (
    tenant         TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    id             TEXT NOT NULL,
    device         TEXT,
    bytes          BIGINT NOT NULL,
    received_unix  BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id, id)
);
