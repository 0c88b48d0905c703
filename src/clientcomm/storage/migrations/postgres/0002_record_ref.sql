-- clientcomm schema v2 (PostgreSQL): Record.ref, a second grouping reference (an assignee, a
-- case file, an actor; not unique), and reads by a created_at range. The same logical schema
-- as migrations/sqlite/0002_record_ref.sql.
--
-- records_created is built first, under a SHARE lock (reads go on, writes wait); it is the only
-- index here that covers existing rows. To keep writes going on a large table, create it
-- beforehand with exactly this definition and CONCURRENTLY; this migration then skips it.
--
-- It is partial on `created_at IS NOT NULL` (true for every row: the column is NOT NULL) so that
-- only queries with a condition on created_at can use it. As a plain (firm_id, kind, created_at)
-- index (in either column order) the planner tied it with records_firm_kind_id for
-- `UPDATE ... WHERE firm_id AND kind AND id` on a freshly filled table without statistics and
-- scanned the whole kind (measured: 100 get+update 530 ms instead of 120 ms at 10k rows);
-- tests/storage/test_postgres.py checks that plan.
CREATE INDEX IF NOT EXISTS records_created ON records (firm_id, kind, created_at)
    WHERE created_at IS NOT NULL;
-- A nullable column without default: a catalog change only, no table rewrite.
ALTER TABLE records ADD COLUMN ref TEXT;
-- Partial: rows without a ref (the bulk of them: messages, mailing copies) cost nothing on
-- insert or COPY, and lookups by id cannot pick them. `ref = $1` implies `ref IS NOT NULL`
-- (a strict operator), with or without a generic plan.
CREATE INDEX records_ref ON records (firm_id, kind, ref, seq) WHERE ref IS NOT NULL;
CREATE INDEX records_ref_status ON records (firm_id, kind, ref, status, seq) WHERE ref IS NOT NULL;
