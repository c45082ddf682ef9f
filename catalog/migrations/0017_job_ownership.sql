-- Jobs belong to someone twice over: the principal (hash of the API key) that asked for them, who alone
-- sees and deletes them (anonymous runs of read-only processes are visible to anyone), and the server
-- process that runs them, which keeps a heartbeat row so that another server on the same database fails
-- only the jobs of owners that stopped beating. A finished job is deleted once it expires (the server
-- that finished it sets the time from its retention setting).
ALTER TABLE eofusion.jobs
    ADD COLUMN principal text,
    ADD COLUMN read_only boolean NOT NULL DEFAULT false,
    ADD COLUMN owner     text,
    ADD COLUMN expires   timestamptz;

-- Jobs stored before this migration have no principal and are not marked read-only: nobody sees them.
-- Finished ones expire a week (the default retention) after they finished.
UPDATE eofusion.jobs SET expires = COALESCE(finished, updated, created) + interval '7 days'
WHERE status IN ('successful', 'failed', 'dismissed');

CREATE INDEX jobs_principal_created_idx ON eofusion.jobs (principal, created DESC);
CREATE INDEX jobs_expires_idx ON eofusion.jobs (expires) WHERE expires IS NOT NULL;
-- The orphan sweep reads unfinished jobs by owner.
CREATE INDEX jobs_unfinished_owner_idx ON eofusion.jobs (owner) WHERE status IN ('accepted', 'running');

-- One row per live server process: its last heartbeat and how often it beats, so any server can tell
-- whether another one stopped (no beat for a few of that server's own intervals).
CREATE TABLE eofusion.job_owners (
    owner       text PRIMARY KEY,
    started     timestamptz NOT NULL DEFAULT now(),
    beat        timestamptz NOT NULL DEFAULT now(),
    heartbeat_s integer NOT NULL CHECK (heartbeat_s > 0)
);
