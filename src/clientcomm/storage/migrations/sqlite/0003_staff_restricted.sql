-- clientcomm schema v3 (SQLite): staff access is restricted unless the host says otherwise
-- (hardening item 4). A staff row written without `unrestricted` is restricted (DEFAULT 0),
-- and a row with a client list that also says unrestricted (the fail-open default of 0.1:
-- `Staff(..., client_ids={...})` was unrestricted) is made restricted, its list kept: the
-- list is what the host asked for. SQLite cannot change a column default in place, so the
-- table is rebuilt (nothing references dir_staff).
CREATE TABLE dir_staff_v3 (
    firm_id      TEXT    NOT NULL REFERENCES dir_firms (id) ON DELETE CASCADE,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    email        TEXT,
    unrestricted INTEGER NOT NULL DEFAULT 0,
    client_ids   TEXT    NOT NULL DEFAULT '[]',
    permissions  TEXT    NOT NULL DEFAULT '[]',
    active       INTEGER NOT NULL DEFAULT 1,
    language     TEXT    NOT NULL DEFAULT 'de',
    PRIMARY KEY (firm_id, id)
);
INSERT INTO dir_staff_v3 (firm_id, id, name, role, email, unrestricted, client_ids, permissions,
                          active, language)
SELECT firm_id, id, name, role, email,
       CASE WHEN client_ids <> '[]' THEN 0 ELSE unrestricted END,
       client_ids, permissions, active, language
FROM dir_staff;
DROP TABLE dir_staff;
ALTER TABLE dir_staff_v3 RENAME TO dir_staff;
