-- clientcomm schema v5: firm settings the capabilities read from the Directory: the firm's
-- time zone (announcements' "remove after" day, seed 004) and "Manager Freigabe" (seed 003:
-- PDF/A download links only to staff with the letter_approval permission). Existing firms
-- get the defaults: Europe/Berlin, approval off.
ALTER TABLE dir_firms ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'Europe/Berlin';
ALTER TABLE dir_firms ADD COLUMN letter_approval INTEGER NOT NULL DEFAULT 0;
