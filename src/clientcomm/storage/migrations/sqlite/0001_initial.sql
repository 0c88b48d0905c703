-- clientcomm schema v1 (SQLite). Timestamps are integer microseconds since the Unix epoch (UTC).
CREATE TABLE records (
    seq         INTEGER PRIMARY KEY,
    firm_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    parent      TEXT,
    key         TEXT,
    status      TEXT,
    due_at      INTEGER,
    data        TEXT    NOT NULL DEFAULT '{}',
    body        BLOB,
    version     INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL,
    UNIQUE (firm_id, kind, id)
);
CREATE UNIQUE INDEX records_key ON records (firm_id, kind, key) WHERE key IS NOT NULL;
CREATE INDEX records_parent ON records (firm_id, kind, parent, seq);
CREATE INDEX records_status ON records (kind, status, seq);

-- The SQL-backed Directory (the host's data for the embedded default, demo and CLI).
CREATE TABLE dir_firms (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    office_email TEXT,
    language     TEXT NOT NULL DEFAULT 'de'
);
CREATE TABLE dir_groups (
    firm_id TEXT NOT NULL REFERENCES dir_firms (id) ON DELETE CASCADE,
    id      TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (firm_id, id)
);
CREATE TABLE dir_clients (
    firm_id TEXT    NOT NULL REFERENCES dir_firms (id) ON DELETE CASCADE,
    id      TEXT    NOT NULL,
    name    TEXT    NOT NULL,
    active  INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (firm_id, id)
);
CREATE TABLE dir_client_groups (
    firm_id   TEXT NOT NULL,
    client_id TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    PRIMARY KEY (firm_id, client_id, group_id),
    FOREIGN KEY (firm_id, client_id) REFERENCES dir_clients (firm_id, id) ON DELETE CASCADE,
    FOREIGN KEY (firm_id, group_id) REFERENCES dir_groups (firm_id, id) ON DELETE CASCADE
);
CREATE INDEX dir_client_groups_group ON dir_client_groups (firm_id, group_id);
CREATE TABLE dir_contacts (
    firm_id    TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    email      TEXT,
    registered INTEGER NOT NULL DEFAULT 0,
    preference TEXT    NOT NULL DEFAULT 'online',
    address    TEXT,
    language   TEXT    NOT NULL DEFAULT 'de',
    PRIMARY KEY (firm_id, id),
    FOREIGN KEY (firm_id, client_id) REFERENCES dir_clients (firm_id, id) ON DELETE CASCADE
);
CREATE INDEX dir_contacts_client ON dir_contacts (firm_id, client_id);
CREATE TABLE dir_staff (
    firm_id      TEXT    NOT NULL REFERENCES dir_firms (id) ON DELETE CASCADE,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    email        TEXT,
    unrestricted INTEGER NOT NULL DEFAULT 1,
    client_ids   TEXT    NOT NULL DEFAULT '[]',
    permissions  TEXT    NOT NULL DEFAULT '[]',
    active       INTEGER NOT NULL DEFAULT 1,
    language     TEXT    NOT NULL DEFAULT 'de',
    PRIMARY KEY (firm_id, id)
);
CREATE TABLE dir_case_files (
    firm_id       TEXT NOT NULL,
    id            TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    title         TEXT NOT NULL,
    handler_id    TEXT,
    assistant_ids TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (firm_id, id),
    FOREIGN KEY (firm_id, client_id) REFERENCES dir_clients (firm_id, id) ON DELETE CASCADE
);
CREATE INDEX dir_case_files_client ON dir_case_files (firm_id, client_id);
