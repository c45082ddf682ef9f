-- Items and collections removed in a transaction are queued, and the queue is judged at commit.
--
-- 0018 put the deferred constraint triggers on pgstac.items and pgstac.collections themselves. A replace that
-- also moves an item's time range makes pgstac ALTER the partition in the same transaction, and PostgreSQL
-- refuses to ALTER a table with pending trigger events ("cannot ALTER TABLE ... because it has pending trigger
-- events": a PUT answered 500). Now an immediate row trigger (which fires at the end of the deleting
-- statement, leaving nothing pending on pgstac's tables) queues the removed row, and the deferred trigger sits
-- on the queue: at commit, as before, a row that exists again was replaced, one that does not was deleted.
DROP TRIGGER IF EXISTS items_removed ON pgstac.items;
DROP TRIGGER IF EXISTS collections_removed ON pgstac.collections;

CREATE TABLE eofusion.removed_rows (
    kind       text NOT NULL CHECK (kind IN ('item', 'collection')),
    collection text NOT NULL,
    id         text
);

CREATE FUNCTION eofusion.queue_removed_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eofusion.removed_rows (kind, collection, id) VALUES ('item', OLD.collection, OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION eofusion.queue_removed_collection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eofusion.removed_rows (kind, collection, id) VALUES ('collection', OLD.id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER items_removed AFTER DELETE ON pgstac.items
    FOR EACH ROW EXECUTE FUNCTION eofusion.queue_removed_item();
CREATE TRIGGER collections_removed AFTER DELETE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION eofusion.queue_removed_collection();

-- The judgements of 0018's triggers, as functions of the removed row's keys.
CREATE FUNCTION eofusion.judge_removed_item(_collection text, _id text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    names jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM pgstac.items i WHERE i.collection = _collection AND i.id = _id) THEN
        SELECT to_jsonb(array_agg(DISTINCT x ORDER BY x)) INTO names
        FROM eofusion.annotations a
        JOIN eofusion.labels l ON l.id = a.label_id
        LEFT JOIN eofusion.labels p ON p.id = l.parent_id
        CROSS JOIN LATERAL unnest(ARRAY[l.path, COALESCE(p.path, l.path)]) x
        WHERE a.collection = _collection AND a.item_id = _id;
        UPDATE pgstac.items i
        SET content = jsonb_set(i.content, '{properties,eofusion:annotations}', COALESCE(names, '[]'::jsonb))
        WHERE i.collection = _collection AND i.id = _id
          AND (names IS NOT NULL OR i.content->'properties'->>'eofusion:kind' = 'patch')
          AND i.content->'properties'->'eofusion:annotations' IS DISTINCT FROM COALESCE(names, '[]'::jsonb);
    ELSE
        PERFORM eofusion.forget_item_data(_collection, ARRAY[_id]);
    END IF;
END $$;

CREATE FUNCTION eofusion.judge_removed_collection(_id text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgstac.collections c WHERE c.id = _id) THEN
        DELETE FROM eofusion.descriptors WHERE collection = _id;
        DELETE FROM eofusion.hash_codes WHERE collection = _id;
        DELETE FROM eofusion.text2patch_embeddings WHERE collection = _id;
        DELETE FROM eofusion.ground_truth WHERE collection = _id;
        DELETE FROM eofusion.feedback WHERE collection = _id;
        WITH gone AS (DELETE FROM eofusion.annotations WHERE collection = _id
                      RETURNING collection || '.' || item_id || '.L' || label_id AS item)
        DELETE FROM pgstac.items i USING gone WHERE i.collection = 'annotations' AND i.id = gone.item;
    END IF;
END $$;

DROP FUNCTION eofusion.item_removed();
DROP FUNCTION eofusion.collection_removed();

-- At commit: each queued row is judged (and leaves the queue).
CREATE FUNCTION eofusion.judge_removed_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM eofusion.removed_rows r WHERE r.ctid = (
        SELECT ctid FROM eofusion.removed_rows q
        WHERE q.kind = NEW.kind AND q.collection = NEW.collection AND q.id IS NOT DISTINCT FROM NEW.id LIMIT 1);
    IF NEW.kind = 'item' THEN
        PERFORM eofusion.judge_removed_item(NEW.collection, NEW.id);
    ELSE
        PERFORM eofusion.judge_removed_collection(NEW.collection);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER removed_rows_judged AFTER INSERT ON eofusion.removed_rows DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION eofusion.judge_removed_row();

-- Whoever may delete pgstac rows (pgstac's own roles, e.g. pgstac_ingest) need no rights on eofusion's tables:
-- the queue and its judgement run with the rights of the schema's owner, on a fixed search path.
ALTER FUNCTION eofusion.queue_removed_item() SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION eofusion.queue_removed_collection() SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION eofusion.judge_removed_row() SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION eofusion.judge_removed_item(text, text) SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION eofusion.judge_removed_collection(text) SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION eofusion.forget_item_data(text, text[]) SECURITY DEFINER SET search_path = pg_catalog;
