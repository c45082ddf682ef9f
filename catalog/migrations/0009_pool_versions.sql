-- A version number per collection's descriptors, bumped by any write: the active-learning pool
-- cache checks it every round, which must not cost a scan of hundreds of thousands of rows.
CREATE TABLE eofusion.pool_versions (
    collection text PRIMARY KEY,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION eofusion.bump_pool_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eofusion.pool_versions AS v (collection)
    SELECT DISTINCT collection FROM changed
    ON CONFLICT (collection) DO UPDATE SET version = v.version + 1, updated_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER descriptors_insert_version AFTER INSERT ON eofusion.descriptors
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION eofusion.bump_pool_version();
CREATE TRIGGER descriptors_update_version AFTER UPDATE ON eofusion.descriptors
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION eofusion.bump_pool_version();
CREATE TRIGGER descriptors_delete_version AFTER DELETE ON eofusion.descriptors
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION eofusion.bump_pool_version();

INSERT INTO eofusion.pool_versions (collection) SELECT DISTINCT collection FROM eofusion.descriptors
ON CONFLICT DO NOTHING;
