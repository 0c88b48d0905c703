-- clientcomm schema v4: a case file may have several clients (seed 001, portal sharing):
-- `client_id` stays the primary client, `client_ids` (a JSON list) names the others.
ALTER TABLE dir_case_files ADD COLUMN client_ids TEXT NOT NULL DEFAULT '[]';
