-- clientcomm schema v3 (PostgreSQL): staff access is restricted unless the host says
-- otherwise (hardening item 4). A staff row written without `unrestricted` is restricted
-- (DEFAULT 0), and a row with a client list that also says unrestricted (the fail-open
-- default of 0.1: `Staff(..., client_ids={...})` was unrestricted) is made restricted, its
-- list kept: the list is what the host asked for.
ALTER TABLE dir_staff ALTER COLUMN unrestricted SET DEFAULT 0;
UPDATE dir_staff SET unrestricted = 0 WHERE unrestricted <> 0 AND client_ids <> '[]';
