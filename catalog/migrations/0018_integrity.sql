-- Integrity of derived data: what is computed from a row goes when the row changes or goes.

-- 1. Posts. A post re-ingested with another text loses its text embedding (and a vector staged for it by
-- a re-embedding run), with other media its photo rows: the embedding and image stages pick exactly those
-- posts up again (they look for posts without an embedding / without photo rows). A statement that writes
-- a new text together with its embedding keeps that embedding.
CREATE FUNCTION eofusion.tweet_content_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.text IS DISTINCT FROM OLD.text THEN
        IF NEW.embedding IS NOT DISTINCT FROM OLD.embedding THEN
            NEW.embedding := NULL;
        END IF;
        DELETE FROM eofusion.tweet_reembedding r WHERE r.collection = OLD.collection AND r.id = OLD.id;
    END IF;
    IF NEW.media IS DISTINCT FROM OLD.media THEN
        DELETE FROM eofusion.tweet_images m WHERE m.collection = OLD.collection AND m.tweet_id = OLD.id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER tweets_content_changed BEFORE UPDATE OF text, media ON eofusion.tweets FOR EACH ROW
    WHEN (OLD.text IS DISTINCT FROM NEW.text OR OLD.media IS DISTINCT FROM NEW.media)
    EXECUTE FUNCTION eofusion.tweet_content_changed();

-- 2. Items. pgstac replaces an item by deleting and inserting it in one transaction (update_item, and our
-- bulk upserts in catalog.load do the same), so a row-level DELETE trigger cannot tell a replace from a
-- delete. A deferred constraint trigger can: it runs at commit, when the item either exists again
-- (replaced) or not (deleted).
--   deleted:  its descriptors, hash codes, text-to-patch embeddings, ground truth, session marks and
--             annotations (with the annotation items that publish them) are deleted;
--   replaced: all of these stay, and the item lists its annotation labels again (eofusion:annotations,
--             as catalog.load.refresh_annotation_labels writes them), which a client's PUT does not carry.
CREATE FUNCTION eofusion.forget_item_data(_collection text, _ids text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM eofusion.descriptors WHERE collection = _collection AND item_id = ANY(_ids);
    DELETE FROM eofusion.hash_codes WHERE collection = _collection AND item_id = ANY(_ids);
    DELETE FROM eofusion.text2patch_embeddings WHERE collection = _collection AND item_id = ANY(_ids);
    DELETE FROM eofusion.ground_truth WHERE collection = _collection AND item_id = ANY(_ids);
    DELETE FROM eofusion.feedback WHERE collection = _collection AND item_id = ANY(_ids);
    -- Annotation items are named <collection>.<item>.L<label id> (catalog.annotations.annotation_item_id).
    WITH gone AS (DELETE FROM eofusion.annotations WHERE collection = _collection AND item_id = ANY(_ids)
                  RETURNING collection || '.' || item_id || '.L' || label_id AS item)
    DELETE FROM pgstac.items i USING gone WHERE i.collection = 'annotations' AND i.id = gone.item;
END $$;

CREATE FUNCTION eofusion.item_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    names jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM pgstac.items i WHERE i.collection = OLD.collection AND i.id = OLD.id) THEN
        SELECT to_jsonb(array_agg(DISTINCT x ORDER BY x)) INTO names
        FROM eofusion.annotations a
        JOIN eofusion.labels l ON l.id = a.label_id
        LEFT JOIN eofusion.labels p ON p.id = l.parent_id
        CROSS JOIN LATERAL unnest(ARRAY[l.path, COALESCE(p.path, l.path)]) x
        WHERE a.collection = OLD.collection AND a.item_id = OLD.id;
        UPDATE pgstac.items i
        SET content = jsonb_set(i.content, '{properties,eofusion:annotations}', COALESCE(names, '[]'::jsonb))
        WHERE i.collection = OLD.collection AND i.id = OLD.id
          AND (names IS NOT NULL OR i.content->'properties'->>'eofusion:kind' = 'patch')
          AND i.content->'properties'->'eofusion:annotations' IS DISTINCT FROM COALESCE(names, '[]'::jsonb);
    ELSE
        PERFORM eofusion.forget_item_data(OLD.collection, ARRAY[OLD.id]);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER items_removed AFTER DELETE ON pgstac.items DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION eofusion.item_removed();

-- pgstac deletes a collection's items by dropping its partitions (no row trigger fires): the collection's
-- rows go when the collection does.
CREATE FUNCTION eofusion.collection_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgstac.collections c WHERE c.id = OLD.id) THEN
        DELETE FROM eofusion.descriptors WHERE collection = OLD.id;
        DELETE FROM eofusion.hash_codes WHERE collection = OLD.id;
        DELETE FROM eofusion.text2patch_embeddings WHERE collection = OLD.id;
        DELETE FROM eofusion.ground_truth WHERE collection = OLD.id;
        DELETE FROM eofusion.feedback WHERE collection = OLD.id;
        WITH gone AS (DELETE FROM eofusion.annotations WHERE collection = OLD.id
                      RETURNING collection || '.' || item_id || '.L' || label_id AS item)
        DELETE FROM pgstac.items i USING gone WHERE i.collection = 'annotations' AND i.id = gone.item;
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER collections_removed AFTER DELETE ON pgstac.collections DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION eofusion.collection_removed();

-- 3. Round models were pickles, which run code when read; they are now .npz archives (arrays and JSON
-- parameters, eofusion.active.round.model_to_bytes). Old pickles are never read: cleared here, so the
-- session's next round fits a new model from its stored feedback.
UPDATE eofusion.rounds SET model = NULL
WHERE model IS NOT NULL AND substring(model FROM 1 FOR 4) <> '\x504b0304'::bytea;

-- 4. Vector indexes a bulk load dropped (catalog.bulk.deferred_vector_indexes), recorded in the transaction
-- that drops them, with the advisory lock the loading session holds meanwhile: when that session is gone
-- (the load was killed), the next load or "eofusion db migrate" recreates them from these definitions.
CREATE SEQUENCE eofusion.index_loads AS integer CYCLE;
CREATE TABLE eofusion.deferred_indexes (
    schema_name text NOT NULL,
    index_name  text NOT NULL,
    definition  text NOT NULL,
    load_id     integer NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, index_name)
);
-- Catalogues that lost a descriptor index to a killed load before this migration get it back now.
CREATE INDEX IF NOT EXISTS descriptors_s2_hnsw ON eofusion.descriptors USING hnsw (s2 vector_l2_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX IF NOT EXISTS descriptors_s1_hnsw ON eofusion.descriptors USING hnsw (s1 vector_l2_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX IF NOT EXISTS descriptors_fused_hnsw ON eofusion.descriptors USING hnsw (fused vector_l2_ops)
    WITH (m = 16, ef_construction = 64);
