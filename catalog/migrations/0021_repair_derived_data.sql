-- Catalogues written before 0018 may hold the derived data of items deleted through the STAC API
-- (descriptors, hash codes, text-to-patch embeddings, ground truth, session marks, annotations and the
-- annotation items publishing them), and patches that a STAC PUT stripped of eofusion:annotations. This
-- removes and restores them once, as 0018/0019's triggers would have at the time.
--
-- A function, so that re-running this file (or calling it after a restore from an old dump) repairs again.
CREATE OR REPLACE FUNCTION eofusion.repair_derived_data() RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
DECLARE
    counts jsonb := '{}'::jsonb;
    n bigint;
    t text;
BEGIN
    -- Tables keyed by (collection, item_id) whose rows exist for an item only.
    FOREACH t IN ARRAY ARRAY['descriptors', 'hash_codes', 'text2patch_embeddings', 'ground_truth', 'feedback'] LOOP
        EXECUTE format('DELETE FROM eofusion.%I d WHERE NOT EXISTS (SELECT 1 FROM pgstac.items i '
                       'WHERE i.collection = d.collection AND i.id = d.item_id)', t);
        GET DIAGNOSTICS n = ROW_COUNT;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    -- Annotation items are named <collection>.<item>.L<label id> (catalog.annotations.annotation_item_id).
    WITH gone AS (DELETE FROM eofusion.annotations a
                  WHERE NOT EXISTS (SELECT 1 FROM pgstac.items i WHERE i.collection = a.collection AND i.id = a.item_id)
                  RETURNING a.collection || '.' || a.item_id || '.L' || a.label_id AS item)
    DELETE FROM pgstac.items i USING gone WHERE i.collection = 'annotations' AND i.id = gone.item;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('annotation_items', n);
    -- Annotated items list their labels again (what judge_removed_item writes after a replace).
    WITH names AS (
        SELECT a.collection, a.item_id, to_jsonb(array_agg(DISTINCT x ORDER BY x)) AS labels
        FROM eofusion.annotations a
        JOIN eofusion.labels l ON l.id = a.label_id
        LEFT JOIN eofusion.labels p ON p.id = l.parent_id
        CROSS JOIN LATERAL unnest(ARRAY[l.path, COALESCE(p.path, l.path)]) x
        GROUP BY a.collection, a.item_id)
    UPDATE pgstac.items i
    SET content = jsonb_set(i.content, '{properties,eofusion:annotations}', names.labels)
    FROM names
    WHERE i.collection = names.collection AND i.id = names.item_id
      AND i.content->'properties'->'eofusion:annotations' IS DISTINCT FROM names.labels;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('annotation_lists', n);
    RETURN counts;
END $$;

SELECT eofusion.repair_derived_data();
