-- Jobs of OGC API Processes runs, kept here (not in files) so they survive restarts.
CREATE TABLE eofusion.jobs (
    identifier   text PRIMARY KEY,
    type         text NOT NULL DEFAULT 'process',
    process_id   text NOT NULL,
    status       text NOT NULL,
    message      text,
    progress     integer NOT NULL DEFAULT 0,
    parameters   jsonb,
    created      timestamptz NOT NULL DEFAULT now(),
    started      timestamptz,
    updated      timestamptz,
    finished     timestamptz,
    mimetype     text,
    result_json  jsonb,
    result_bytes bytea
);
CREATE INDEX jobs_created_idx ON eofusion.jobs (created DESC);
