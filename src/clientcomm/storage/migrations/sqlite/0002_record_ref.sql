-- clientcomm schema v2 (SQLite): Record.ref, a second grouping reference (an assignee, a case
-- file, an actor; not unique), and reads by a created_at range.
-- ADD COLUMN of a nullable column without default only changes the schema (no rewrite).
ALTER TABLE records ADD COLUMN ref TEXT;
-- Partial: rows without a ref (the bulk of them: messages, mailing copies) cost nothing on
-- insert. A `ref = ?` condition implies `ref IS NOT NULL`, so the planner uses them.
CREATE INDEX records_ref ON records (firm_id, kind, ref, seq) WHERE ref IS NOT NULL;
CREATE INDEX records_ref_status ON records (firm_id, kind, ref, status, seq) WHERE ref IS NOT NULL;
CREATE INDEX records_created ON records (firm_id, kind, created_at);
